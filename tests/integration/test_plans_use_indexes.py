"""Per-job statements keep using their indexes after the table they were first planned on
(nearly empty, as after a warm-up or a queue that drained) fills up.

A prepared statement's generic plan, made while ``jobs`` held a handful of rows, is a
sequential scan; kept for the connection's life, it reads the whole table for every job once
the table has grown. Counted, not timed: ``pg_stat_user_tables.seq_scan`` before and after.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

from jobengine import guard
from jobengine.domain.job import NewJob
from jobengine.execution import Claim, Executor
from jobengine.store.database import SharedConnection, unpooled_engine

TABLES = ("jobs", "job_history", "job_events")
WARM_UP = 20
FILL = 20_000
MEASURED = 200


def _seq_scans(conn: Connection) -> dict[str, int]:
    conn.execute(text("SELECT pg_stat_clear_snapshot()"))
    rows = conn.execute(
        text("SELECT relname, seq_scan FROM pg_stat_user_tables WHERE relname = ANY(:t)"),
        {"t": list(TABLES)},
    )
    return {name: int(count) for name, count in rows}


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
            admin.execute(
                text(
                    "INSERT INTO jobs (tenant_id, project_id, type, queue, payload, status, "
                    "completed_at) SELECT 'bulk', 'p', 'noop', 'default', '{}', 'completed', "
                    "now() FROM generate_series(1, :n)"
                ),
                {"n": FILL},
            )
        with engine.connect() as reader:
            before = _seq_scans(reader)
            for _ in range(MEASURED):
                _cycle(executor, shared, "w")
            after = _seq_scans(reader)
    finally:
        worker_engine.dispose()
    scans = {table: after[table] - before[table] for table in TABLES}
    assert scans == {table: 0 for table in TABLES}, scans
