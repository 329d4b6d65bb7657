"""The backfiller's per-tick statements keep using their indexes once the tables they were
first planned on (nearly empty) fill up: a tick reads the backfill's open slots, the slots of
its next batch and a source's next slots, never a scan of ``backfill_slots`` or ``jobs``.

Counted, not timed: ``pg_stat_user_tables.seq_scan`` before and after, on one pooled
connection whose prepared statements were planned while the tables were nearly empty.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, text

from jobengine.backfills import service
from jobengine.backfills.model import BackfillSpec, CadenceSpec, JobTemplate, Pacing
from jobengine.execution import Executor
from jobengine.maintenance.backfiller import Backfiller
from jobengine.maintenance.leadership import Leadership
from jobengine.maintenance.report import TickReport
from jobengine.store.database import make_engine, transaction

TABLES = ("jobs", "backfill_slots")
FILL = 20_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def spec(source: str, slots: int, start: datetime = T0, max_in_flight: int = 5) -> BackfillSpec:
    return BackfillSpec(
        tenant_id="t1",
        project_id="p1",
        source=source,
        cadence=CadenceSpec(cron=None, interval_seconds=60, zone="UTC"),
        start=start,
        end=start + timedelta(minutes=slots),
        job=JobTemplate(type="noop"),
        pacing=Pacing(max_in_flight=max_in_flight),
    )


def scans(conn: Connection) -> dict[str, int]:
    conn.execute(text("SELECT pg_stat_clear_snapshot()"))
    rows = conn.execute(
        text("SELECT relname, seq_scan FROM pg_stat_user_tables WHERE relname = ANY(:t)"),
        {"t": list(TABLES)},
    )
    return {str(row[0]): int(row[1]) for row in rows}


def ticks(
    backfiller: Backfiller, engine: Engine, executor: Executor, backfill_id: int, n: int
) -> None:
    """Ticks with the backfill's jobs finishing between them, as a fleet would (found
    through the open-slot index, so this helper scans nothing either)."""
    for _ in range(n):
        backfiller.run(TickReport(leader=True))
        with engine.connect() as conn:
            queued = [
                int(r[0])
                for r in conn.execute(
                    text(
                        "SELECT job_id FROM backfill_slots"
                        " WHERE backfill_id = :b AND outcome IS NULL ORDER BY job_id LIMIT 3"
                    ),
                    {"b": backfill_id},
                )
            ]
        for job_id in queued:
            claim = executor.claim(job_id, "w")
            assert claim is not None
            executor.complete(claim, {"ok": True})
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_stat_force_next_flush()"))


def test_per_tick_backfill_statements_planned_on_empty_tables_still_use_indexes_once_full(
    db_url: str, engine: Engine
) -> None:
    with engine.begin() as admin:
        for table in (*TABLES, "backfills", "backfill_sources"):
            admin.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
    leader_engine = make_engine(db_url, pool_size=1, max_overflow=0)
    try:
        leadership = Leadership(leader_engine, "plans-leader", 30)
        assert leadership.acquire()
        backfiller = Backfiller(leader_engine, leadership, actor="leader", batch=4)
        executor = Executor(engine, lease_ttl_seconds=30)
        with transaction(engine) as conn:
            warm = service.create(conn, spec("warm", 40), dry_run=False, created_by="t").backfill
        assert warm is not None
        ticks(
            backfiller, engine, executor, warm.id, 12
        )  # prepared while the tables are nearly empty

        filler = Backfiller(engine, Leadership(engine, "plans-leader", 30), actor="x")
        filler.leadership = leadership
        filler.batch = FILL
        with transaction(engine) as conn:
            service.create(
                conn, spec("bulk", FILL, max_in_flight=FILL), dry_run=False, created_by="t"
            )
        filler.run(TickReport(leader=True))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM backfill_slots")).scalar_one() > FILL
        with transaction(engine) as conn:
            later = T0 + timedelta(days=30)
            measured = service.create(
                conn, spec("warm", 40, start=later), dry_run=False, created_by="t"
            ).backfill
        assert measured is not None

        with engine.connect() as reader:
            before = scans(reader)
            ticks(backfiller, engine, executor, measured.id, 12)
            after = scans(reader)
    finally:
        leader_engine.dispose()
    assert {t: after[t] - before[t] for t in TABLES} == {t: 0 for t in TABLES}
