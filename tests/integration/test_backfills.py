"""Backfills on real Postgres, driven by the leader's backfiller with an injected clock:
each slot's job once whatever runs twice or overlaps, dry runs that write nothing, pacing
read from the rows, cancel, and refusals that name the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from jobengine.backfills import service
from jobengine.backfills.errors import (
    BackfillInvalid,
    BackfillNotFound,
    CadenceMismatch,
    TooManySlots,
)
from jobengine.backfills.model import (
    BackfillSpec,
    BackfillStatus,
    CadenceSpec,
    JobTemplate,
    Pacing,
)
from jobengine.backfills.plan import MAX_SLOTS
from jobengine.domain.status import JobStatus
from jobengine.execution import Executor
from jobengine.maintenance.backfiller import Backfiller
from jobengine.maintenance.leadership import Leadership
from jobengine.maintenance.report import TickReport
from jobengine.schedules.errors import InvalidCadence
from jobengine.store.database import transaction

T0 = datetime(2026, 3, 1, tzinfo=UTC)
UNPACED = Pacing()
HOURLY = CadenceSpec(cron="0 * * * *", interval_seconds=None, zone="Europe/Berlin")


def spec(
    start: datetime = T0,
    hours: int = 24,
    *,
    source: str = "orders",
    cadence: CadenceSpec = HOURLY,
    pacing: Pacing = UNPACED,
    job: JobTemplate | None = None,
) -> BackfillSpec:
    return BackfillSpec(
        tenant_id="t1",
        project_id="p1",
        source=source,
        cadence=cadence,
        start=start,
        end=start + timedelta(hours=hours),
        job=job or JobTemplate(type="noop", payload={"table": "orders"}),
        pacing=pacing,
    )


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC))


@pytest.fixture
def backfiller(engine: Engine, clock: Clock) -> Backfiller:
    leadership = Leadership(engine, "test-leader", 30)
    assert leadership.acquire()
    return Backfiller(engine, leadership, actor="test-leader", clock=clock, batch=10)


def create(engine: Engine, the_spec: BackfillSpec, dry_run: bool = False) -> service.Created:
    with transaction(engine) as conn:
        return service.create(conn, the_spec, dry_run=dry_run, created_by="test")


def tick(backfiller: Backfiller) -> TickReport:
    report = TickReport(leader=True)
    backfiller.run(report)
    return report


def until_created(backfiller: Backfiller, backfill_id: int, ticks: int = 50) -> None:
    for _ in range(ticks):
        tick(backfiller)
        if state(backfiller.engine, backfill_id)["status"] != "creating":
            return
    raise AssertionError(f"backfill {backfill_id} still creating after {ticks} ticks")


def state(engine: Engine, backfill_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM backfills WHERE id = :id"), {"id": backfill_id})
        return dict(row.mappings().one())


def slot_jobs(engine: Engine) -> list[tuple[datetime, str]]:
    """Every job's slot and status, by slot."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT scheduled_for, status::text FROM jobs ORDER BY scheduled_for")
        )
        return [(r[0], r[1]) for r in rows]


def counts(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [
            int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
            for t in ("jobs", "backfills", "backfill_sources", "backfill_slots")
        ]


def test_a_backfill_run_twice_creates_its_jobs_once_and_an_overlap_only_the_new_slots(
    engine: Engine, backfiller: Backfiller
) -> None:
    first = create(engine, spec()).backfill
    assert first is not None
    until_created(backfiller, first.id)
    again = create(engine, spec()).backfill
    assert again is not None
    until_created(backfiller, again.id)
    overlap = create(engine, spec(T0 + timedelta(hours=12), 24)).backfill
    assert overlap is not None
    until_created(backfiller, overlap.id)

    slots = [slot for slot, _ in slot_jobs(engine)]
    assert len(slots) == len(set(slots)) == 36
    assert slots[0] == T0 and slots[-1] == T0 + timedelta(hours=35)
    made = [state(engine, b.id) for b in (first, again, overlap)]
    assert [(b["slots_created"], b["slots_existing"]) for b in made] == [(24, 0), (0, 24), (12, 12)]
    assert state(engine, again.id)["cursor"] is None


def test_a_dry_run_writes_nothing_and_counts_the_slots_and_those_that_exist(
    engine: Engine, backfiller: Backfiller
) -> None:
    dry = create(engine, spec(hours=30), dry_run=True)
    assert dry.backfill is None
    assert (dry.plan.total, dry.plan.existing, dry.plan.new) == (30, 0, 30)
    assert (dry.plan.first, dry.plan.last) == (T0, T0 + timedelta(hours=29))
    assert counts(engine) == [0, 0, 0, 0]

    made = create(engine, spec(hours=10)).backfill
    assert made is not None
    until_created(backfiller, made.id)
    before = counts(engine)
    dry = create(engine, spec(hours=30), dry_run=True)
    assert (dry.plan.total, dry.plan.existing, dry.plan.new) == (30, 10, 20)
    assert [p.job_id is not None for p in dry.plan.preview] == [True] * 10 + [False] * 10
    assert counts(engine) == before


def finish(executor: Executor, job_ids: list[int]) -> None:
    for job_id in job_ids:
        claim = executor.claim(job_id, "w")
        assert claim is not None
        executor.complete(claim, {"ok": True})


def open_jobs(engine: Engine, backfill_id: int) -> list[int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT j.id FROM backfill_slots s JOIN jobs j ON j.id = s.job_id "
                "WHERE s.backfill_id = :b AND j.status NOT IN ('completed', 'failed', "
                "'cancelled') ORDER BY j.id"
            ),
            {"b": backfill_id},
        )
        return [int(r[0]) for r in rows]


def test_pacing_never_lets_more_jobs_be_in_flight_than_max_in_flight(
    engine: Engine, backfiller: Backfiller
) -> None:
    made = create(engine, spec(hours=23, pacing=Pacing(max_in_flight=4))).backfill
    assert made is not None
    executor = Executor(engine, lease_ttl_seconds=30)
    seen = []
    for _ in range(40):
        tick(backfiller)
        in_flight = open_jobs(engine, made.id)
        seen.append(len(in_flight))
        assert len(in_flight) <= 4, seen
        finish(executor, in_flight[:3])
        if state(engine, made.id)["status"] == "created" and not open_jobs(engine, made.id):
            break
    assert state(engine, made.id)["slots_created"] == 23
    assert max(seen) == 4, "pacing let the backfill fill its window"


def test_pacing_per_second_creates_no_faster_than_the_injected_clock_allows(
    engine: Engine, backfiller: Backfiller, clock: Clock
) -> None:
    made = create(engine, spec(hours=20, pacing=Pacing(max_per_second=2))).backfill
    assert made is not None
    clock.now = made.created_at
    tick(backfiller)
    assert state(engine, made.id)["slots_created"] == 1
    clock.now = made.created_at + timedelta(seconds=3)
    tick(backfiller)
    tick(backfiller)
    assert state(engine, made.id)["slots_created"] == 7
    clock.now = made.created_at + timedelta(seconds=60)
    until_created(backfiller, made.id)
    assert state(engine, made.id)["slots_created"] == 20


def test_cancel_stops_creation_and_optionally_cancels_the_queued_jobs(
    engine: Engine, backfiller: Backfiller
) -> None:
    made = create(engine, spec(hours=48)).backfill
    assert made is not None
    tick(backfiller)  # one batch of 10
    with transaction(engine) as conn:
        cancelled, moved = service.cancel(conn, made.id, "t1", cancel_queued=True, actor="ops")
    assert cancelled.status is BackfillStatus.CANCELLED and len(moved) == 10
    for _ in range(3):
        tick(backfiller)
    assert len(slot_jobs(engine)) == 10
    assert {status for _, status in slot_jobs(engine)} == {JobStatus.CANCELLED.value}
    with transaction(engine) as conn:
        again, moved_again = service.cancel(conn, made.id, "t1", cancel_queued=True, actor="ops")
        _, progress = service.get(conn, made.id, "t1")
    assert again.status is BackfillStatus.CANCELLED and moved_again == []
    assert (progress.total, progress.created, progress.cancelled) == (48, 10, 10)


def test_cancel_without_the_queued_jobs_leaves_them_to_run(
    engine: Engine, backfiller: Backfiller
) -> None:
    made = create(engine, spec(hours=48)).backfill
    assert made is not None
    tick(backfiller)
    with transaction(engine) as conn:
        service.cancel(conn, made.id, "t1", cancel_queued=False, actor="ops")
    tick(backfiller)
    assert [status for _, status in slot_jobs(engine)] == [JobStatus.SCHEDULED.value] * 10


def refused(engine: Engine, the_spec: BackfillSpec, error: type[Exception]) -> str:
    with pytest.raises(error) as caught:
        create(engine, the_spec, dry_run=False)
    assert counts(engine)[1:] == [0, 0, 0] or error is CadenceMismatch
    return str(caught.value)


def test_refusals_name_the_field_and_write_nothing(engine: Engine) -> None:
    assert "end" in refused(engine, spec(hours=-1), BackfillInvalid)
    assert "not after start" in refused(engine, spec(hours=0), BackfillInvalid)
    too_many = spec(hours=MAX_SLOTS + 1, cadence=CadenceSpec(None, 3600, "UTC"))
    assert f"{MAX_SLOTS:,}" in refused(engine, too_many, TooManySlots)
    bad_cron = spec(cadence=CadenceSpec("61 * * * *", None, "UTC"))
    assert "cron" in refused(engine, bad_cron, InvalidCadence)
    both = spec(cadence=CadenceSpec("0 * * * *", 60, "UTC"))
    assert "exactly one of cron and intervalSeconds" in refused(engine, both, InvalidCadence)
    bad_zone = spec(cadence=CadenceSpec("0 * * * *", None, "Mars/Olympus"))
    assert "zone" in refused(engine, bad_zone, InvalidCadence)
    assert "maxInFlight" in refused(engine, spec(pacing=Pacing(max_in_flight=0)), BackfillInvalid)
    create(engine, spec())
    other = spec(cadence=CadenceSpec(None, 600, "UTC"))
    assert "cadence" in refused(engine, other, CadenceMismatch)


def test_reading_another_tenants_backfill_is_not_found(engine: Engine) -> None:
    made = create(engine, spec()).backfill
    assert made is not None
    with pytest.raises(BackfillNotFound), transaction(engine) as conn:
        service.get(conn, made.id, "someone-else")


def test_a_batch_refused_by_its_type_records_the_error_and_lets_other_backfills_go_on(
    engine: Engine, backfiller: Backfiller
) -> None:
    bad = create(engine, spec(source="a")).backfill
    good = create(engine, spec(source="b")).backfill
    assert bad is not None and good is not None
    with engine.begin() as conn:  # the template stopped matching its type after creation
        conn.execute(
            text("UPDATE backfills SET job_type = 'no-such-type' WHERE id = :id"), {"id": bad.id}
        )
    for _ in range(5):
        tick(backfiller)
    assert "no-such-type" in (state(engine, bad.id)["last_error"] or "")
    assert state(engine, bad.id)["slots_created"] == 0
    assert state(engine, good.id)["status"] == "created"
