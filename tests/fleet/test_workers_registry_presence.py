"""A worker's presence outlives Postgres being away, and any error of one beat: a failed beat
is logged, never raised, and the next beat that reaches Postgres announces the row (and prunes
long-gone ones)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, make_url, text

from config.settings import Settings
from jobengine.store.database import normalize_url
from jobengine.store.workers_repository import WorkerRecord, WorkersRepository
from tests.fleet.conftest import wait_until
from workers.presence import Presence


def worker_record() -> WorkerRecord:
    return WorkerRecord(
        name="w@test",
        host="test",
        pid=os.getpid(),
        queues=["default", "jobs.noop"],
        types=["noop"],
        concurrency=1,
        sealed=False,
        version="test",
        started_at=datetime.now(UTC),
    )


def test_a_beat_while_postgres_is_away_is_survived_and_the_next_one_announces_the_row(
    pg_admin_url: str, migrated_template: str
) -> None:
    database = f"presence_{os.getpid()}"
    url = make_url(normalize_url(pg_admin_url)).set(database=database)
    record = worker_record()
    presence = Presence(url.render_as_string(hide_password=False), record, Settings())
    presence.beat()  # the database does not exist yet: refused, logged, not raised

    admin = create_engine(normalize_url(pg_admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {database} TEMPLATE {migrated_template}"))
    check = create_engine(url)
    try:
        with check.begin() as conn:  # a worker that died eight days ago: pruned by the beat
            conn.execute(
                text(
                    "INSERT INTO workers (name, host, pid, queues, types, last_seen_at) VALUES "
                    "('old@test', 'test', 1, '{}', '{}', now() - interval '8 days')"
                )
            )
        presence.beat()
        with check.connect() as conn:
            rows = conn.execute(text("SELECT name, types, draining FROM workers")).all()
        assert [tuple(r) for r in rows] == [("w@test", ["noop"], False)]
        presence.drain()
        presence.beat()
        with check.connect() as conn:
            assert conn.execute(text("SELECT draining FROM workers")).scalar_one() is True
        presence.stop()
        with check.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM workers")).scalar_one() == 0
    finally:
        check.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        admin.dispose()


def test_the_heartbeat_thread_outlives_an_unexpected_error_and_announces_the_row(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_announce = WorkersRepository.announce
    raised: list[str] = []

    def announce_failing_once(
        repo: WorkersRepository, worker: WorkerRecord, *, draining: bool = False
    ) -> None:
        if not raised:
            raised.append("announce")
            raise RuntimeError("a bug in one beat")
        real_announce(repo, worker, draining=draining)

    monkeypatch.setattr(WorkersRepository, "announce", announce_failing_once)
    presence = Presence(db_url, worker_record(), Settings(worker_heartbeat_seconds=0.05))
    check = create_engine(normalize_url(db_url))
    presence.start()
    try:

        def announced() -> bool:
            with check.connect() as conn:
                return bool(conn.execute(text("SELECT count(*) FROM workers")).scalar_one())

        wait_until(announced, 30, "the row announced by a later beat")
        assert raised == ["announce"], "the first beat met the error"
    finally:
        presence.stop()
        check.dispose()
