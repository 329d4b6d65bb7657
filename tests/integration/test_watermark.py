"""The watermark of a source: the latest slot such that it and every earlier slot completed,
moved by the leader's tick from the slot jobs themselves, held by the first failed slot or
gap, and moved on once a dead-letter replay completes the failed slot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from jobengine.backfills import service, watermark
from jobengine.backfills.model import BackfillSpec, CadenceSpec, JobTemplate
from jobengine.backfills.repository import BackfillRepository
from jobengine.dead_letters import DeadLetters, ReplayOptions
from jobengine.execution import Executor, describe_error
from jobengine.job_types import JobTypeRegistry, JobTypeSpec
from jobengine.maintenance.backfiller import Backfiller
from jobengine.maintenance.leadership import Leadership
from jobengine.maintenance.report import TickReport
from jobengine.store.database import transaction

T0 = datetime(2026, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


class Broken(Exception):
    pass


def types() -> JobTypeRegistry:
    reg = JobTypeRegistry()
    reg.register(JobTypeSpec("load", retry_policy={"max_retries": 0}))
    return reg


def spec(first_hour: int, hours: int) -> BackfillSpec:
    return BackfillSpec(
        tenant_id="t1",
        project_id="p1",
        source="orders",
        cadence=CadenceSpec(cron=None, interval_seconds=3600, zone="UTC"),
        start=T0 + first_hour * HOUR,
        end=T0 + (first_hour + hours) * HOUR,
        job=JobTemplate(type="load"),
    )


@pytest.fixture
def backfiller(engine: Engine) -> Backfiller:
    leadership = Leadership(engine, "test-leader", 30)
    assert leadership.acquire()
    return Backfiller(engine, leadership, actor="test-leader", types=types())


@pytest.fixture
def executor(engine: Engine) -> Executor:
    return Executor(engine, lease_ttl_seconds=30, types=types())


def backfill(engine: Engine, backfiller: Backfiller, first_hour: int, hours: int) -> None:
    with transaction(engine) as conn:
        service.create(conn, spec(first_hour, hours), dry_run=False, created_by="t", types=types())
    backfiller.run(TickReport(leader=True))


def job_of(engine: Engine, hour: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT job_id FROM backfill_slots WHERE slot_at = :at"),
                {"at": T0 + hour * HOUR},
            ).scalar_one()
        )


def run(executor: Executor, engine: Engine, hours: range | list[int], fail: bool = False) -> None:
    for hour in hours:
        claim = executor.claim(job_of(engine, hour), "w")
        assert claim is not None
        if not fail:
            executor.complete(claim, {"ok": True})
            continue
        try:
            raise Broken("the upstream table is missing")
        except Broken as exc:
            executor.record_outcome_of_failure(claim, exc, describe_error(exc))


def mark(engine: Engine, backfiller: Backfiller) -> tuple[datetime | None, datetime | None]:
    backfiller.run(TickReport(leader=True))
    with transaction(engine) as conn:
        [source] = BackfillRepository(conn).sources("t1", "orders", 10)
    return source.watermark, source.held_at


def at(hour: int) -> datetime:
    return T0 + hour * HOUR


def test_the_watermark_stops_at_the_first_failed_slot_and_moves_after_a_replay(
    engine: Engine, backfiller: Backfiller, executor: Executor
) -> None:
    backfill(engine, backfiller, 0, 10)
    assert mark(engine, backfiller) == (None, at(0)), "nothing completed yet"
    run(executor, engine, range(0, 4))
    run(executor, engine, [4], fail=True)
    run(executor, engine, range(5, 10))
    assert mark(engine, backfiller) == (at(3), at(4))
    with transaction(engine) as conn:
        [source] = BackfillRepository(conn).sources("t1", "orders", 10)
    assert (source.held_by_job, source.held_by_status) == (job_of(engine, 4), "failed")

    letters = DeadLetters(engine, types=types())
    letters.replay(letters.id_for_job(job_of(engine, 4)), ReplayOptions(actor="ops"))
    assert mark(engine, backfiller) == (at(3), at(4)), "replayed, not yet completed"
    run(executor, engine, [4])
    assert mark(engine, backfiller) == (at(9), at(10))


def test_a_slot_with_no_job_is_a_gap_the_watermark_waits_at_until_it_is_filled(
    engine: Engine, backfiller: Backfiller, executor: Executor
) -> None:
    backfill(engine, backfiller, 0, 5)
    backfill(engine, backfiller, 10, 5)
    run(executor, engine, [*range(0, 5), *range(10, 15)])
    assert mark(engine, backfiller) == (at(4), at(5))
    backfill(engine, backfiller, 5, 5)
    run(executor, engine, range(5, 10))
    assert mark(engine, backfiller) == (at(14), at(15))


def test_slots_created_before_the_watermark_put_it_back_until_they_complete(
    engine: Engine, backfiller: Backfiller, executor: Executor
) -> None:
    backfill(engine, backfiller, 10, 5)
    run(executor, engine, range(10, 15))
    assert mark(engine, backfiller) == (at(14), at(15))
    backfill(engine, backfiller, 0, 10)
    assert mark(engine, backfiller) == (None, at(0))
    run(executor, engine, range(0, 10))
    assert mark(engine, backfiller) == (at(14), at(15))


def test_a_source_far_behind_catches_up_a_bounded_page_a_tick(
    engine: Engine, backfiller: Backfiller, executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watermark, "MOST", 20)
    monkeypatch.setattr(watermark, "FIRST_PAGE", 4)
    backfill(engine, backfiller, 0, 50)
    run(executor, engine, range(0, 50))
    marks = [mark(engine, backfiller)[0] for _ in range(3)]
    assert marks == [at(19), at(39), at(49)]


def test_the_watermark_moves_while_a_large_backfill_is_still_being_created(
    engine: Engine, executor: Executor
) -> None:
    leadership = Leadership(engine, "small-batches", 30)
    assert leadership.acquire()
    small = Backfiller(engine, leadership, actor="leader", types=types(), batch=10)
    backfill(engine, small, 0, 30)  # its first tick creates slots 0-9
    run(executor, engine, range(0, 10))
    assert mark(engine, small) == (at(9), at(10)), "moved in the tick that created 10-19"
    with engine.connect() as conn:
        created: int = conn.execute(text("SELECT slots_created FROM backfills")).scalar_one()
    assert created == 20
