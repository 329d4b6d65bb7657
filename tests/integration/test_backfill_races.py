"""Two writers of one source at once, and a leader that dies mid-batch: each slot still gets
its job once, and a batch is all or nothing (jobs, slot rows and cursor together)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from jobengine.backfills import service
from jobengine.backfills.creation import Batch, create_batch
from jobengine.backfills.model import BackfillSpec, CadenceSpec, JobTemplate
from jobengine.backfills.repository import BackfillRepository
from jobengine.catalogue import catalogue_of
from jobengine.store.database import transaction

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def spec(first_minute: int, minutes: int) -> BackfillSpec:
    return BackfillSpec(
        tenant_id="t1",
        project_id="p1",
        source="clicks",
        cadence=CadenceSpec(cron=None, interval_seconds=60, zone="UTC"),
        start=T0 + timedelta(minutes=first_minute),
        end=T0 + timedelta(minutes=first_minute + minutes),
        job=JobTemplate(type="noop"),
    )


def create(engine: Engine, first_minute: int, minutes: int) -> int:
    with transaction(engine) as conn:
        made = service.create(conn, spec(first_minute, minutes), dry_run=False, created_by="t")
    assert made.backfill is not None
    return made.backfill.id


def batch(engine: Engine, backfill_id: int, budget: int = 50) -> Batch:
    with transaction(engine) as conn:
        return create_batch(
            conn,
            backfill_id,
            budget=budget,
            now=datetime.now(UTC),
            types=catalogue_of(conn),
            actor="t",
        )


def slot_counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        jobs: int = conn.execute(text("SELECT count(*) FROM jobs")).scalar_one()
        slots: int = conn.execute(
            text("SELECT count(DISTINCT scheduled_for) FROM jobs")
        ).scalar_one()
        rows: int = conn.execute(text("SELECT count(*) FROM backfill_slots")).scalar_one()
    return jobs, slots, rows


def test_overlapping_backfills_batched_at_once_create_each_slots_job_once(
    engine: Engine,
) -> None:
    ids = [create(engine, 0, 200), create(engine, 100, 200), create(engine, 50, 200)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(ids))

    def drive(backfill_id: int) -> None:
        try:
            start.wait(10)
            for _ in range(5):
                batch(engine, backfill_id)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=drive, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert slot_counts(engine) == (300, 300, 300)
    with engine.connect() as conn:
        made = conn.execute(
            text("SELECT sum(slots_created), sum(slots_existing) FROM backfills")
        ).one()
    assert tuple(made) == (300, 300), "every slot of every range counted once, made or found"


def test_a_batch_that_dies_midway_writes_nothing_and_the_next_creates_its_slots(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    backfill_id = create(engine, 0, 30)

    def dies(*args: object, **kwargs: object) -> int:
        raise RuntimeError("the leader died between the jobs and their slot rows")

    with monkeypatch.context() as patched:
        patched.setattr(BackfillRepository, "insert_slots", dies)
        with pytest.raises(RuntimeError):
            batch(engine, backfill_id, budget=10)
    assert slot_counts(engine) == (0, 0, 0)
    with transaction(engine) as conn:
        found = BackfillRepository(conn).get(backfill_id, None)
    assert found is not None and found.cursor == T0 and found.slots_created == 0
    while batch(engine, backfill_id, budget=10).walked:
        pass
    assert slot_counts(engine) == (30, 30, 30)
