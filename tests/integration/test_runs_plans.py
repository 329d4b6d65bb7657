"""A run's per-job statements, prepared while the tables are nearly empty, still read only
their own rows once a run of 20,000 edges fills them: no scan of jobs, edges or runs."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

from jobengine.execution import Executor
from jobengine.runs import service
from jobengine.store.database import SharedConnection, unpooled_engine
from tests.integration.test_runs_promotion import DIAMOND, claim, complete, spec_of

TABLES = ("jobs", "job_edges", "runs")
WARM_UP = 10
FILL = 20_000
MEASURED = 50


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


def _diamond(executor: Executor, shared: SharedConnection) -> None:
    """Submit a diamond and run it to the end: submission, promotion and the run's counts,
    its root finished alone, its parents and its leaf by batches as a worker's are."""
    with shared.transaction() as tx:
        _, jobs = service.submit_run(tx, spec_of(DIAMOND), actor="test")
    a, b, c, d = jobs
    complete(executor, a)
    executor.complete_many([(claim(executor, b), None), (claim(executor, c), None)])
    executor.complete_many([(claim(executor, d), None)])
    with shared.use() as raw:
        raw.execute(text("SELECT pg_stat_force_next_flush()"))


def test_run_statements_planned_on_empty_tables_still_use_indexes_once_they_fill(
    db_url: str, engine: Engine
) -> None:
    with engine.begin() as admin:
        for table in TABLES:
            admin.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
    worker_engine = unpooled_engine(db_url, application_name="test-run-plans")
    shared = SharedConnection(worker_engine)
    executor = Executor(worker_engine, lease_ttl_seconds=30, connection=shared)
    try:
        for _ in range(WARM_UP):
            _diamond(executor, shared)
        with engine.begin() as admin:  # one wide run finished long ago: its jobs and edges
            run_id = admin.execute(
                text(
                    "INSERT INTO runs (tenant_id, project_id, name, status, jobs_total, "
                    "jobs_completed, completed_at) VALUES ('bulk', 'p', 'wide', 'completed', "
                    ":n, :n, now()) RETURNING id"
                ),
                {"n": FILL + 1},
            ).scalar_one()
            admin.execute(
                text(
                    "INSERT INTO jobs (tenant_id, project_id, type, queue, payload, status, "
                    "completed_at, run_id, run_key) SELECT 'bulk', 'p', 'noop', 'default', '{}', "
                    "'completed', now(), :r, 'k' || g FROM generate_series(0, :n) AS g"
                ),
                {"r": run_id, "n": FILL},
            )
            admin.execute(
                text(
                    "INSERT INTO job_edges (run_id, parent_id, child_id) "
                    "SELECT :r, min(id) OVER (), id FROM jobs WHERE run_id = :r "
                    "ORDER BY id OFFSET 1"
                ),
                {"r": run_id},
            )
        with engine.connect() as reader:
            before = _reads(reader)
            for _ in range(MEASURED):
                _diamond(executor, shared)
            after = _reads(reader)
    finally:
        worker_engine.dispose()
    scans = {table: after[table][0] - before[table][0] for table in TABLES}
    assert scans == {table: 0 for table in TABLES}, scans
    read_per_run = (after["jobs"][1] - before["jobs"][1]) / MEASURED
    assert read_per_run < 200, read_per_run
