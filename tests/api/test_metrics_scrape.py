"""A ``/metrics`` scrape reads no table of history whole: counted, not timed, as
``pg_stat_user_tables.seq_scan`` of ``jobs``, ``job_history`` and ``job_events`` before and after
scrapes of a database holding many final jobs (the timings are ``bench/history_scale.py``'s)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import Connection, Engine, text

from bench.history_scale import fill_history
from jobengine import guard
from jobengine.api.app import create_app
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.store.database import make_engine, transaction
from jobengine.store.metrics_repository import fold_all
from tests.api.conftest import LiveServer, RecordingPublisher, api_settings
from tests.api.test_operations import samples

TABLES = ("jobs", "job_history", "job_events")
HISTORY_ROWS = 20_000


def _seq_scans(conn: Connection) -> dict[str, int]:
    conn.execute(text("SELECT pg_stat_clear_snapshot()"))
    rows = conn.execute(
        text("SELECT relname, seq_scan FROM pg_stat_user_tables WHERE relname = ANY(:t)"),
        {"t": list(TABLES)},
    )
    return {name: int(count) for name, count in rows}


def _live_jobs(engine: Engine) -> None:
    """A few jobs in every live state and one open dead letter, beside the history."""
    with transaction(engine) as conn:
        for _ in range(3):
            guard.create_job(conn, NewJob(type="noop"), schedule=True)
        later = datetime.now(UTC) + timedelta(hours=1)
        guard.create_job(conn, NewJob(type="noop", not_before=later), schedule=False)
        running = guard.create_job(conn, NewJob(type="noop"), schedule=True)
        assert running is not None
        guard.transition(
            conn,
            running.id,
            [guard.Step(JobStatus.CLAIMED), guard.Step(JobStatus.RUNNING)],
            lease_owner="w",
        )


def test_a_scrape_of_a_large_history_reads_no_history_table_whole(
    db_url: str, engine: Engine
) -> None:
    fill_history(engine, HISTORY_ROWS)
    _live_jobs(engine)
    fold_all(engine)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE jobs, job_history, job_events"))
    scraper = make_engine(db_url, pool_size=1, max_overflow=0)  # one backend: its stats flushed
    app = create_app(
        api_settings(db_url),
        engine=scraper,
        publisher=RecordingPublisher(),
        revoker=None,
        broker_check=lambda: None,
    )
    try:
        with LiveServer(app) as live, engine.connect() as reader:
            before = _seq_scans(reader)
            first = httpx.get(f"{live.url}/metrics")
            _live_jobs(engine)  # new events for the next scrape's fold
            second = httpx.get(f"{live.url}/metrics")
            with scraper.connect() as conn:
                conn.execute(text("SELECT pg_stat_force_next_flush()"))
            after = _seq_scans(reader)
    finally:
        scraper.dispose()
    assert first.status_code == second.status_code == 200
    got = samples(second.text)
    assert got[("jobengine_jobs", (("state", "completed"),))] > HISTORY_ROWS / 6
    assert got[("jobengine_jobs", (("state", "pending"),))] == 2
    assert got[("jobengine_jobs", (("state", "running"),))] == 2
    births = sum(
        got[("jobengine_transitions_total", (("from_state", ""), ("to_state", state)))]
        for state in ("pending", "scheduled")
    )
    assert births == (
        got[("jobengine_jobs", (("state", "completed"),))]
        + got[("jobengine_jobs", (("state", "failed"),))]
        + got[("jobengine_jobs", (("state", "cancelled"),))]
        + 10
    )
    assert {table: after[table] - before[table] for table in TABLES} == dict.fromkeys(TABLES, 0)
