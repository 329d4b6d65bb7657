"""A large backfill created by the leader in bounded batches while its other services keep
their cadence: in every tick a job that came due is promoted and an expired lease is rescued,
and no tick grows with the backfill's size.

5,000 slots in ``make test``; 100,000 with ``CHAOS_FULL=1`` (``CHAOS_FULL=1 pytest
tests/integration/test_backfill_at_scale.py``; about a minute, measured: 58 s).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from jobengine import guard
from jobengine.backfills import service
from jobengine.backfills.model import BackfillSpec, CadenceSpec, JobTemplate
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.execution import Executor
from jobengine.maintenance.backfiller import BATCH
from jobengine.maintenance.service import Reaper
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import DispatchRef, JobsRepository

SLOTS = 100_000 if os.environ.get("CHAOS_FULL") else 5_000
TICK_BOUND_SECONDS = 5.0
"""Generous for a loaded 2-core machine; a tick that created every slot at once would take
about a minute at 100,000."""


class NoBroker:
    def publish(self, ref: DispatchRef, countdown: float | None = None) -> None:
        pass

    def publish_chunk(self, refs: Sequence[DispatchRef]) -> None:
        pass


def due_job(engine: Engine) -> int:
    """A job whose start time has just passed: the promoter's work."""
    with transaction(engine) as conn:
        job = guard.create_job(
            conn, NewJob(type="noop", not_before=datetime.now(UTC)), schedule=False
        )
    assert job is not None and job.status is JobStatus.PENDING
    return job.id


def lost_job(engine: Engine, dead_worker: Executor) -> int:
    """A running job whose worker is gone and whose lease has run out: the rescuer's work."""
    with transaction(engine) as conn:
        job = guard.create_job(conn, NewJob(type="noop"), schedule=True)
    assert job is not None
    assert dead_worker.claim(job.id, "worker-gone") is not None
    return job.id


def status(engine: Engine, job_id: int) -> JobStatus:
    with transaction(engine) as conn:
        return JobsRepository(conn).get(job_id).status


def test_a_large_backfill_is_created_in_bounded_batches_while_promotion_and_rescue_go_on(
    engine: Engine,
) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    spec = BackfillSpec(
        tenant_id="t1",
        project_id="p1",
        source="events",
        cadence=CadenceSpec(cron=None, interval_seconds=60, zone="UTC"),
        start=start,
        end=start + timedelta(minutes=SLOTS),
        job=JobTemplate(type="noop"),
    )
    with transaction(engine) as conn:
        made = service.create(conn, spec, dry_run=False, created_by="test").backfill
    assert made is not None and made.slots_total == SLOTS
    reaper = Reaper(
        engine,
        NoBroker(),
        Executor(engine, lease_ttl_seconds=30),
        name="leader",
        redispatch_after_seconds=600,
        dispatch_grace_seconds=0,
    )
    dead_worker = Executor(engine, lease_ttl_seconds=-1)
    ticks: list[float] = []
    for _ in range(SLOTS // BATCH + 5):
        due, lost = due_job(engine), lost_job(engine, dead_worker)
        began = time.perf_counter()
        report = reaper.tick()
        ticks.append(time.perf_counter() - began)
        assert report.leader
        assert due in report.promoted and status(engine, due) is JobStatus.SCHEDULED
        assert lost in report.rescued and status(engine, lost) is not JobStatus.RUNNING
        assert len(report.backfilled) <= BATCH
        if not report.backfilled:
            break
    with engine.connect() as conn:
        slots, distinct = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT scheduled_for) FROM jobs "
                "WHERE scheduled_for IS NOT NULL"
            )
        ).one()
        state = conn.execute(
            text("SELECT status, slots_created FROM backfills WHERE id = :id"), {"id": made.id}
        ).one()
    assert (slots, distinct) == (SLOTS, SLOTS)
    assert tuple(state) == ("created", SLOTS)
    assert len(ticks) >= SLOTS // BATCH, "created in batches, not in one tick"
    assert max(ticks) < TICK_BOUND_SECONDS, ticks
