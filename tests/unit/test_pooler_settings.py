"""What ``JOBENGINE_DB_POOLER=transaction`` changes in how each role connects (no server
needed; tests/pgbouncer show why on a real PgBouncer)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from config.settings import get_settings
from jobengine.store.database import NO_AUTOMATIC_PREPARE, prepare_args
from jobengine.store.role_connections import reaper_bounds, role_connect_args


@pytest.fixture
def pooler(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings re-read per test, so the variable each test sets is the one in force."""
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("JOBENGINE_DB_POOLER", raising=False)
    get_settings.cache_clear()


def reaper_args() -> dict[str, object]:
    bounds = reaper_bounds(15.0)
    return role_connect_args(
        "reaper",
        statement_timeout_seconds=bounds["statement_timeout"],
        lock_timeout_seconds=bounds["lock_timeout"],
        idle_in_transaction_seconds=bounds["idle_in_transaction_session_timeout"],
    )


@pytest.mark.usefixtures("pooler")
def test_by_default_the_reaper_sends_its_bounds_and_only_run_all_prepares() -> None:
    args = reaper_args()
    assert args["options"] == (
        "-c statement_timeout=15000 -c lock_timeout=5000 "
        "-c idle_in_transaction_session_timeout=7500"
    )
    assert prepare_args() == NO_AUTOMATIC_PREPARE
    assert args["prepare_threshold"] == NO_AUTOMATIC_PREPARE["prepare_threshold"]


@pytest.mark.usefixtures("pooler")
def test_through_a_transaction_pooler_nothing_is_prepared_and_no_options_are_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBENGINE_DB_POOLER", "transaction")
    args = reaper_args()
    assert "options" not in args
    assert args["prepare_threshold"] is None and prepare_args() == {"prepare_threshold": None}
    assert args["application_name"] == "jobengine-reaper"  # PgBouncer tracks this one


@pytest.mark.usefixtures("pooler")
def test_an_unknown_pooler_mode_is_refused_naming_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBENGINE_DB_POOLER", "session")
    with pytest.raises(ValueError, match="'none' or 'transaction'"):
        get_settings()
