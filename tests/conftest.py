"""Fixtures that start real servers: one private Postgres per test session, a fresh migrated
database per test (cloned from a template built by the migrations, never by ``create_all``).

Set ``JOBENGINE_TEST_DATABASE_URL`` to run against an existing server instead; the tests then
create and drop their own databases on it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from jobengine.store import migrate
from jobengine.store.database import make_engine, normalize_url

os.environ.setdefault("JOBENGINE_COMMAND_TYPES_ENABLED", "true")
"""The test installation opts in to command-running types (shell), as most tests use them;
tests of the opt-in itself pass their own settings or worker environment."""

TEMPLATE_DB = "jobengine_template"
_counter = itertools.count()


def _admin_engine(url: str) -> Engine:
    return create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("JOBENGINE_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    from jobengine.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(Path(tmp_path_factory.mktemp("pg")))
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def migrated_template(pg_admin_url: str) -> str:
    admin = _admin_engine(pg_admin_url)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {TEMPLATE_DB}"))
    url = make_url(normalize_url(pg_admin_url)).set(database=TEMPLATE_DB)
    engine = make_engine(url.render_as_string(hide_password=False))
    migrate.upgrade(engine)
    engine.dispose()
    admin.dispose()
    return TEMPLATE_DB


def _fresh_database(pg_admin_url: str, template: str | None) -> tuple[str, str]:
    name = f"t_{os.getpid()}_{next(_counter)}"
    admin = _admin_engine(pg_admin_url)
    with admin.connect() as conn:
        suffix = f" TEMPLATE {template}" if template else ""
        conn.execute(text(f"CREATE DATABASE {name}{suffix}"))
    admin.dispose()
    url = make_url(normalize_url(pg_admin_url)).set(database=name)
    return name, url.render_as_string(hide_password=False)


def _drop_database(pg_admin_url: str, name: str) -> None:
    admin = _admin_engine(pg_admin_url)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def db_url(pg_admin_url: str, migrated_template: str) -> Iterator[str]:
    """URL of a new database at the migrations' head, dropped after the test."""
    name, url = _fresh_database(pg_admin_url, migrated_template)
    yield url
    _drop_database(pg_admin_url, name)


@pytest.fixture
def empty_db_url(pg_admin_url: str) -> Iterator[str]:
    """URL of a new, empty database (no schema), for migration tests."""
    name, url = _fresh_database(pg_admin_url, None)
    yield url
    _drop_database(pg_admin_url, name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url, pool_size=10, max_overflow=20)
    yield eng
    eng.dispose()
