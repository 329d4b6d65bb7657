"""A worker's presence outlives Postgres being away: a failed beat is logged, never raised,
and the next beat that reaches Postgres announces the row (and prunes long-gone ones)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from sqlalchemy import create_engine, make_url, text

from config.settings import Settings
from jobengine.store.database import normalize_url
from jobengine.store.workers_repository import WorkerRecord
from workers.presence import Presence


def test_a_beat_while_postgres_is_away_is_survived_and_the_next_one_announces_the_row(
    pg_admin_url: str, migrated_template: str
) -> None:
    database = f"presence_{os.getpid()}"
    url = make_url(normalize_url(pg_admin_url)).set(database=database)
    record = WorkerRecord(
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
