"""What the charts and the fleet page read: per-attempt outcomes and latencies from a bounded
window of history, found through indexes, and queue depth from the scheduled jobs' index."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from jobengine.console import queries, views
from jobengine.domain.status import JobStatus
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import JobFilter, JobsRepository
from tests.console.conftest import jobs_in

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _steps(conn: Connection, job_id: int, *steps: tuple[str, int, int]) -> None:
    """History rows (to_status, attempt, minutes before NOW), in id order as given."""
    for status, attempt, minutes in steps:
        conn.exec_driver_sql(
            "INSERT INTO job_history (job_id, from_status, to_status, at, actor, attempt) "
            "VALUES (%(j)s, NULL, %(s)s, %(at)s, 'test', %(a)s)",
            {"j": job_id, "s": status, "a": attempt, "at": NOW - timedelta(minutes=minutes)},
        )


def _plan(conn: Connection, sql: str, params: dict[str, Any]) -> str:
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    rows = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", params).scalar_one()
    return json.dumps(rows)


def test_charts_count_every_attempts_outcome_in_the_window_and_nothing_before_it(
    engine: Engine,
) -> None:
    [flaky] = jobs_in(engine, "acme", type="resize")
    [old] = jobs_in(engine, "acme", type="report")
    [other] = jobs_in(engine, "globex", type="resize")
    with transaction(engine) as conn:
        conn.exec_driver_sql("DELETE FROM job_history")
        conn.exec_driver_sql("UPDATE jobs SET created_at = %(t)s", {"t": NOW - timedelta(hours=4)})
        _steps(conn, old.id, ("running", 1, 180), ("completed", 1, 179))
        _steps(conn, flaky.id, ("running", 1, 10), ("failed", 1, 9), ("running", 2, 8))
        _steps(conn, flaky.id, ("completed", 2, 6))
        _steps(conn, other.id, ("running", 1, 5), ("failed", 1, 4))
        window = views.Window.last(60, now=NOW)
        acme = views.throughput(conn, window, "acme")
        everyone = views.throughput(conn, window, None)
        [latency] = views.latencies(conn, window.since, "acme")
    assert [(s.type, sum(s.completed), sum(s.failed)) for s in acme] == [("resize", 1, 1)]
    assert [(s.type, sum(s.completed), sum(s.failed)) for s in everyone] == [("resize", 1, 2)]
    assert latency.type == "resize" and latency.n == 2
    assert latency.run_seconds[0] == 90.0  # runs of 60 s and 120 s
    assert latency.wait_seconds[0] == 230 * 60.0  # created 4 h before NOW, started at -10 min


def test_the_windows_first_history_row_is_found_by_bisecting_ids(engine: Engine) -> None:
    [job] = jobs_in(engine, "acme")
    with transaction(engine) as conn:
        conn.exec_driver_sql("DELETE FROM job_history")
        _steps(conn, job.id, *[("running", 1, 100 - i) for i in range(100)])
        ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM job_history ORDER BY id")]
        assert views.first_history_id(conn, NOW - timedelta(minutes=30, seconds=30)) == ids[70]
        assert views.first_history_id(conn, NOW + timedelta(minutes=1)) == ids[-1] + 1
        assert views.first_history_id(conn, NOW - timedelta(days=1)) == ids[0]


def test_chart_and_fleet_queries_are_served_by_indexes(engine: Engine) -> None:
    params = {"first_id": 1, "since": NOW, "bucket_seconds": 60, "tenant_id": None, "id": 1}
    with transaction(engine) as conn:
        for sql in (
            queries.HISTORY_AT_OR_AFTER,
            queries.OUTCOMES_BY_BUCKET,
            queries.LATENCY_PERCENTILES,
            queries.QUEUE_DEPTH,
            queries.LEASES % {"limit": 10},
        ):
            plan = _plan(conn, sql, params if "%(" in sql else {})
            assert "Seq Scan" not in plan, (sql.splitlines()[1], plan)


def test_a_tenants_counts_and_newest_page_read_by_index_not_by_scanning_jobs(
    engine: Engine,
) -> None:
    with transaction(engine) as conn:
        conn.exec_driver_sql(
            "INSERT INTO jobs (tenant_id, project_id, type, queue, payload, status, scheduled_at,"
            " completed_at) SELECT 't' || (i %% 20), 'p', 'noop', 'default', '{}', 'completed',"
            " now(), now() FROM generate_series(1, 20000) AS i"
        )
        conn.exec_driver_sql("ANALYZE jobs")

    def scans() -> int:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
            conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            return int(
                conn.exec_driver_sql(
                    "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'jobs'"
                ).scalar_one()
            )

    before = scans()
    with transaction(engine) as conn:
        counts = views.state_counts(conn, JobFilter(tenant_id="t3"))
        page = JobsRepository(conn).list(JobFilter(tenant_id="t3"), limit=50, newest_first=True)
        conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
    assert counts[JobStatus.COMPLETED].n == 1000 and not counts[JobStatus.COMPLETED].estimated
    assert len(page.jobs) == 50
    assert scans() == before
