"""A URL that lists a dead host before the live one still reaches the live one, through every
way the engine connects: its engines, a role's engine, migrations and the CLI."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, create_engine, make_url
from typer.testing import CliRunner

from jobengine.cli import app
from jobengine.embedded import free_loopback_port
from jobengine.services import current_database_revision, head_revision, upgrade_database
from jobengine.store.database import make_engine, normalize_url, unpooled_engine
from jobengine.store.role_connections import reaper_engine, with_role_parameters


def _dead_first(url: str) -> str:
    """``url`` (a TCP one) as libpq's list: a closed loopback port first, then its server."""
    parsed = make_url(url)
    hosts = f"127.0.0.1:{free_loopback_port()},{parsed.host}:{parsed.port}"
    return f"postgresql://{parsed.username}@{hosts}/{parsed.database}?target_session_attrs=any"


ENGINES: dict[str, Callable[[str], Engine]] = {
    "make_engine": make_engine,
    "unpooled_engine": lambda url: unpooled_engine(url, application_name="jobengine-test"),
    "reaper_engine": lambda url: reaper_engine(url, 5.0),
    "url_with_role_parameters": lambda url: create_engine(
        normalize_url(with_role_parameters(url, "api"))
    ),
}


@pytest.mark.parametrize("make", ENGINES.values(), ids=ENGINES.keys())
def test_an_engine_on_a_url_listing_a_dead_host_first_reaches_the_live_one(
    db_url: str, make: Callable[[str], Engine]
) -> None:
    live_port = make_url(db_url).port
    engine = make(_dead_first(db_url))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT inet_server_port()").scalar() == live_port
    finally:
        engine.dispose()


@pytest.mark.usefixtures("quiet_cli")
def test_migrations_and_the_cli_run_through_a_url_listing_a_dead_host_first(
    empty_db_url: str,
) -> None:
    url = _dead_first(empty_db_url)
    assert upgrade_database(url).after == head_revision()
    assert current_database_revision(url) == head_revision()
    result = CliRunner().invoke(app, ["db", "current"], env={"JOBENGINE_DATABASE_URL": url})
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"{head_revision()} (head)"
