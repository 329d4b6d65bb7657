"""Start-up checks of the long-running roles, as real processes reading a real Postgres: each
problem is one line naming it and its fix; the process waits it out, or exits with
``EXIT_CONFIG`` when waiting cannot help (a schema from a newer release)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, make_url, text

from config.settings import Settings
from jobengine.embedded import free_loopback_port
from jobengine.store import migrate
from jobengine.store.connection_budget import (
    CONNECTIONS_PER_API_PROCESS,
    CONNECTIONS_PER_REAPER,
    connection_budget,
    fleet_needs,
)
from jobengine.store.database import make_engine, normalize_url
from jobengine.store.startup import EXIT_CONFIG
from tests.fleet.conftest import REPO, wait_until

REAPER = "from jobengine.fleet import run_reaper; run_reaper(name='reaper-1')"


class Role:
    """One role's process, its output in a file the test reads."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def lines_with(self, word: str) -> list[str]:
        return [line for line in self.output().splitlines() if word in line]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


StartRole = Callable[..., Role]


@pytest.fixture
def start_role(tmp_path: Path, closed_broker: str) -> Iterator[StartRole]:
    started: list[Role] = []

    def start(database_url: str, code: str = REAPER, **env: str) -> Role:
        full = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
        full.update(
            JOBENGINE_DATABASE_URL=database_url,
            JOBENGINE_BROKER_URL=closed_broker,
            JOBENGINE_REAPER_INTERVAL_SECONDS="0.3",
            JOBENGINE_LEADER_TTL_SECONDS="2",
            PYTHONPATH=str(REPO),
            **env,
        )
        role = Role([sys.executable, "-c", code], full, tmp_path / f"role-{len(started)}.log")
        started.append(role)
        return role

    yield start
    for role in started:
        role.stop()


def _leads(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text("SELECT count(*) FROM leadership")).scalar_one())


def test_a_missing_migration_is_one_line_and_the_reaper_carries_on_once_it_is_run(
    empty_db_url: str, start_role: StartRole
) -> None:
    role = start_role(empty_db_url)
    wait_until(lambda: role.lines_with("database_not_ready"), 60, "the start-up line")
    [line] = role.lines_with("database_not_ready")
    assert "SCHEMA_MISSING" in line and "jobengine db upgrade" in line
    assert role.proc.poll() is None

    engine = make_engine(empty_db_url)
    try:
        migrate.upgrade(engine)
        wait_until(lambda: _leads(engine), 60, "the reaper leads once migrated")
    finally:
        engine.dispose()
    assert len(role.lines_with("database_not_ready")) == 1  # one line, not one per retry
    assert role.lines_with("database_ready")


def test_a_url_naming_a_missing_database_is_one_line_and_is_retried_until_it_exists(
    pg_admin_url: str, migrated_template: str, start_role: StartRole
) -> None:
    name = f"later_{os.getpid()}"
    url = make_url(normalize_url(pg_admin_url)).set(database=name)
    role = start_role(url.render_as_string(hide_password=False))
    wait_until(lambda: role.lines_with("database_not_ready"), 60, "the start-up line")
    [line] = role.lines_with("database_not_ready")
    assert "DATABASE_MISSING" in line and "createdb" in line
    admin = make_engine(pg_admin_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {migrated_template}"))
        engine = make_engine(url.render_as_string(hide_password=False))
        wait_until(lambda: _leads(engine), 60, "the reaper leads once the database exists")
        engine.dispose()
    finally:
        role.stop()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.engine.dispose()


def test_an_unreachable_server_and_a_refused_role_each_say_so_and_keep_retrying(
    db_url: str, start_role: StartRole
) -> None:
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_loopback_port()}/postgres"
    unreachable = start_role(closed)
    stranger = make_url(normalize_url(db_url)).set(username="nobody_here")
    refused = start_role(stranger.render_as_string(hide_password=False))
    for role, code in ((unreachable, "DATABASE_UNREACHABLE"), (refused, "DATABASE_REFUSED_ROLE")):
        [line] = wait_until(partial(role.lines_with, "database_not_ready"), 60, code)
        assert code in line and "JOBENGINE_DATABASE_URL" in line
        assert role.proc.poll() is None, role.output()
        role.stop()
        assert role.proc.returncode == 0  # SIGTERM ends the wait cleanly


def test_a_schema_from_a_newer_release_ends_the_reaper_and_the_api_with_the_config_code(
    db_url: str, engine: Engine, start_role: StartRole
) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    api = "from jobengine.cli import main; import sys; sys.argv = ['jobengine', 'api']; main()"
    for code in (REAPER, api):
        role = start_role(db_url, code, JOBENGINE_API_PORT=str(free_loopback_port()))
        assert role.proc.wait(60) == EXIT_CONFIG, role.output()
        [line] = role.lines_with("database_not_ready")
        assert "SCHEMA_NEWER" in line and "9999_from_the_future" in line


def test_a_fleet_too_big_for_the_server_is_warned_about_at_start(
    db_url: str, start_role: StartRole
) -> None:
    role = start_role(db_url, JOBENGINE_FLEET_WORKERS="100", JOBENGINE_FLEET_WORKER_CONCURRENCY="8")
    wait_until(lambda: role.lines_with("connection_budget"), 60, "the budget line")
    [line] = role.lines_with("connection_budget")
    assert "connection_budget_exceeded" in line and "needed=" in line
    assert "max_connections" in line and "JOBENGINE_FLEET_WORKERS=100" in line


def test_the_connection_budget_adds_up_the_fleet_and_reads_the_servers_slots(
    engine: Engine,
) -> None:
    settings = Settings(
        fleet_workers=3, fleet_worker_concurrency=4, fleet_api_processes=2, fleet_reapers=2
    )
    assert fleet_needs(settings) == 3 * (1 + 4) + 2 * CONNECTIONS_PER_API_PROCESS + 2 * (
        CONNECTIONS_PER_REAPER
    )
    with engine.connect() as conn:
        budget = connection_budget(settings, conn)
        max_connections = int(conn.execute(text("SHOW max_connections")).scalar_one())
        reserved = int(conn.execute(text("SHOW superuser_reserved_connections")).scalar_one())
    assert budget.max_connections == max_connections
    assert budget.usable <= max_connections - reserved
    assert budget.in_use >= 1  # this very connection
    assert budget.fits == (budget.needed + budget.others <= budget.usable)


API_ENTRY_POINTS = {
    "jobengine api": (
        "from jobengine.cli import main; import sys; sys.argv = ['jobengine', 'api']; main()"
    ),
    "python -m jobengine.api": (
        "import runpy; runpy.run_module('jobengine.api', run_name='__main__')"
    ),
}


@pytest.mark.parametrize("entry", API_ENTRY_POINTS)
def test_the_api_on_a_usable_database_serves_and_names_its_connections(
    db_url: str, engine: Engine, start_role: StartRole, entry: str
) -> None:
    port = free_loopback_port()
    api = API_ENTRY_POINTS[entry]
    role = start_role(db_url, api, JOBENGINE_API_PORT=str(port))

    def ready() -> int | None:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
        except httpx.HTTPError:
            return None

    assert wait_until(ready, 60, "the API answers") in (200, 503)  # 503: the broker is closed
    # /readyz asks Postgres on a connection of its own; a scrape reads through the API's pool.
    assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200
    with engine.connect() as conn:
        named: int = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'jobengine-api' "
                "AND datname = current_database()"
            )
        ).scalar_one()
    assert named >= 1
    assert role.lines_with("connection_budget")
    assert role.proc.poll() is None
