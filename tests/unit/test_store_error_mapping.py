"""Driver errors sorted into the engine's own: an outage, a conflict, or a cancelled statement."""

from __future__ import annotations

import psycopg
import psycopg.errors
import pytest
from sqlalchemy.exc import OperationalError, PendingRollbackError

from jobengine.errors import (
    StoreConflict,
    StoreOverloaded,
    StoreStatementCancelled,
    StoreUnavailable,
    ValidationError,
)
from jobengine.store.database import retrying, store_error_for, store_errors


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("40P01", StoreConflict),  # deadlock_detected
        ("40001", StoreConflict),  # serialization_failure
        ("55P03", StoreConflict),  # lock_not_available
        ("57014", StoreStatementCancelled),  # query_canceled
        ("57P01", StoreUnavailable),  # admin_shutdown (pg_terminate_backend)
        ("57P02", StoreUnavailable),  # crash_shutdown
        ("57P03", StoreUnavailable),  # cannot_connect_now
        ("08006", StoreUnavailable),  # connection_failure
        ("53300", StoreOverloaded),  # too_many_connections: up, but saturated
    ],
)
def test_each_sqlstate_maps_to_the_error_that_says_what_happened(
    sqlstate: str, expected: type[Exception]
) -> None:
    driver_error = psycopg.errors.lookup(sqlstate)("from the server")
    assert type(store_error_for(driver_error)) is expected
    wrapped = OperationalError("SELECT 1", {}, driver_error)
    assert type(store_error_for(wrapped)) is expected


def test_a_connection_error_without_sqlstate_is_unavailable() -> None:
    assert isinstance(store_error_for(psycopg.OperationalError("refused")), StoreUnavailable)


def test_pending_rollback_on_an_invalidated_connection_is_unavailable_not_a_raw_error() -> None:
    with pytest.raises(StoreUnavailable) as raised, store_errors():
        raise PendingRollbackError("Can't reconnect until invalid transaction is rolled back")
    assert raised.value.retryable


def test_errors_that_are_not_the_databases_pass_through_unchanged() -> None:
    assert store_error_for(ValueError("not ours")) is None
    with pytest.raises(KeyError), store_errors():
        raise KeyError("not ours")


def test_retrying_runs_a_transient_failure_again_until_it_succeeds() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise StoreConflict("deadlock")
        return "done"

    assert retrying(flaky, attempts=5, deadline=5) == "done"
    assert len(calls) == 3


def test_retrying_gives_up_after_its_attempts_and_raises_the_last_error() -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise StoreUnavailable(f"down {len(calls)}")

    with pytest.raises(StoreUnavailable, match="down 3"):
        retrying(down, attempts=3, deadline=5)
    assert len(calls) == 3


def test_retrying_never_repeats_an_error_that_is_not_transient() -> None:
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise ValidationError("bad input")

    with pytest.raises(ValidationError):
        retrying(refused, attempts=5, deadline=5)
    assert len(calls) == 1
