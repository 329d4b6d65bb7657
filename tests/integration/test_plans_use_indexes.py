"""Per-job statements keep using their indexes after the table they were first planned on
(nearly empty, as after a warm-up or a queue that drained) fills up, and read a few rows per
job whatever the backlog: never every job waiting in the state they move jobs from.

A prepared statement's generic plan, made while ``jobs`` held a handful of rows, is a
sequential scan; kept for the connection's life, it reads the whole table for every job once
the table has grown. Counted, not timed: ``pg_stat_user_tables.seq_scan`` before and after.
"""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, text

from jobengine import guard
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.execution import Claim, Executor
from jobengine.guard import Step
from jobengine.store.database import SharedConnection, unpooled_engine

TABLES = ("jobs", "job_history", "job_events")
WARM_UP = 20
FILL = 20_000
MEASURED = 200


def _reads(conn: Connection) -> dict[str, tuple[int, int]]:
    """Per table: sequential scans, and rows read (by sequential or index scan)."""
    conn.execute(text("SELECT pg_stat_clear_snapshot()"))
    rows = conn.execute(
        text(
            "SELECT relname, seq_scan, seq_tup_read + coalesce(idx_tup_fetch, 0) "
            "FROM pg_stat_user_tables WHERE relname = ANY(:t)"
        ),
        {"t": list(TABLES)},
    )
    return {name: (int(scans), int(read)) for name, scans, read in rows}


def _cycle(executor: Executor, conn: SharedConnection, owner: str) -> None:
    """Submit, claim and complete one job, then a chunk of two with its batched completion:
    the per-job statements a worker runs."""
    with conn.transaction() as tx:
        job = guard.create_job(tx, NewJob(type="noop", payload={}), schedule=True)
        chunk = guard.create_jobs(tx, [NewJob(type="noop", payload={}) for _ in range(2)])
    assert job is not None
    claim = executor.claim(job.id, owner)
    assert claim is not None
    assert executor.complete(Claim(job=claim.job, owner=owner), {"ok": True}) is not None
    claims = executor.claim_chunk([j.id for j in chunk], owner)
    written = executor.complete_many([(c, {"ok": True}) for c in claims])
    assert len(claims) == 2 and all(j is not None for j in written.values())
    with conn.use() as raw:
        raw.execute(text("SELECT pg_stat_force_next_flush()"))


def test_per_job_statements_planned_on_an_empty_table_still_use_indexes_once_it_fills(
    db_url: str, engine: Engine
) -> None:
    with engine.begin() as admin:
        for table in TABLES:  # no ANALYZE midway: plans must not depend on one
            admin.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
    worker_engine = unpooled_engine(db_url, application_name="test-plans")
    shared = SharedConnection(worker_engine)
    executor = Executor(worker_engine, lease_ttl_seconds=30, connection=shared)
    try:
        for _ in range(WARM_UP):  # statements prepared while the tables are nearly empty
            _cycle(executor, shared, "w")
        with engine.begin() as admin:
            for status in ("completed", "scheduled"):  # history, and a backlog waiting
                admin.execute(
                    text(
                        "INSERT INTO jobs (tenant_id, project_id, type, queue, payload, status, "
                        "scheduled_at, dispatched_at, completed_at) "
                        "SELECT 'bulk', 'p', 'noop', 'default', '{}', CAST(:s AS job_status), "
                        "now(), now(), CASE WHEN :s = 'completed' THEN now() END "
                        "FROM generate_series(1, :n)"
                    ),
                    {"n": FILL, "s": status},
                )
        with engine.connect() as reader:
            before = _reads(reader)
            for _ in range(MEASURED):
                _cycle(executor, shared, "w")
            after = _reads(reader)
    finally:
        worker_engine.dispose()
    scans = {table: after[table][0] - before[table][0] for table in TABLES}
    assert scans == {table: 0 for table in TABLES}, scans
    # Each cycle moves three jobs through five statements, writing ten history and outbox rows
    # per job whose foreign keys each look their job up: about 40 rows, never a scan of the
    # backlog (a statement that read every scheduled job would read 20,000 per claim).
    read_per_cycle = (after["jobs"][1] - before["jobs"][1]) / MEASURED
    assert read_per_cycle < 100, read_per_cycle


def _scanned_rows(plan: dict[str, Any], table: str) -> list[int]:
    """Rows each scan of ``table`` in an EXPLAIN ANALYZE plan read (its actual rows)."""
    found = []
    if plan.get("Relation Name") == table and "Scan" in plan["Node Type"]:
        found.append(int(plan["Actual Rows"]) + int(plan.get("Rows Removed by Filter", 0)))
    for child in plan.get("Plans", []):
        found.extend(_scanned_rows(child, table))
    return found


def test_a_claim_reads_its_own_row_not_the_backlog_when_statistics_are_from_an_empty_table(
    engine: Engine,
) -> None:
    with engine.begin() as admin:
        admin.execute(text("ALTER TABLE jobs SET (autovacuum_enabled = false)"))
        admin.execute(text("ANALYZE jobs"))  # as after a queue drained; then it refills
        backlog = guard.create_jobs(admin, [NewJob(type="noop") for _ in range(2_000)])
    steps = [Step(JobStatus.CLAIMED), Step(JobStatus.RUNNING)]
    for job_ids, many in (([backlog[50].id], False), ([j.id for j in backlog[60:70]], True)):
        # The guard's own statement and parameters, so EXPLAIN sees exactly what a claim runs.
        params = guard._move_params(steps, actor="w", lease_owner="w")
        params.update(job_ids=job_ids) if many else params.update(job_id=job_ids[0])
        sql = guard._statement((JobStatus.CLAIMED, JobStatus.RUNNING), False, False, True, many)
        with engine.begin() as conn:
            driver = conn.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            [(explained,)] = driver.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params, prepare=False
            ).fetchall()
        rows = _scanned_rows(explained[0]["Plan"], "jobs")
        assert rows and max(rows) <= len(job_ids), rows
