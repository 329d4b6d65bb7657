"""Fixtures of the PgBouncer tests: a private Postgres, a real PgBouncer in transaction mode in
front of it, and this process's settings switched to ``JOBENGINE_DB_POOLER=transaction``.
Without the pgbouncer binary every test here skips, naming ``make pgbouncer``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import get_settings
from jobengine.embedded import EmbeddedPostgres
from tests.chaos.harness import LEADER_TTL_S
from tests.pgbouncer.bouncer import PgBouncer, unavailable


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    server = EmbeddedPostgres(tmp_path / "pg")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bouncer(pg: EmbeddedPostgres, tmp_path: Path) -> Iterator[PgBouncer]:
    """PgBouncer with a small pool for the engine (4) and the reaper's own (4: two reapers of
    two connections each), the reaper's bounds made for the chaos suite's leader TTL."""
    pooler = PgBouncer(tmp_path / "bouncer", pg.port, LEADER_TTL_S, pool_size=4, reaper_pool_size=4)
    pooler.start()
    try:
        yield pooler
    finally:
        pooler.stop()


@pytest.fixture
def pooled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process reaches Postgres through a transaction pooler, for the engines it makes."""
    monkeypatch.setenv("JOBENGINE_DB_POOLER", "transaction")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("JOBENGINE_DB_POOLER")
    get_settings.cache_clear()
