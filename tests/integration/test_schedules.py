"""Schedules on a real Postgres: each slot fired once (failover, two leaders, a crash mid-tick),
daylight-saving days, overlap policies, pause and resume, edits, catch-up and refusals.

Time is the test's: every reaper here takes the test's clock, and the test moves it.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from jobengine import guard, submission
from jobengine.domain.status import JobStatus
from jobengine.errors import UnknownJobType
from jobengine.execution import Executor
from jobengine.guard import Step
from jobengine.maintenance import Leadership, Reaper
from jobengine.maintenance.report import TickReport
from jobengine.maintenance.scheduler import SLOTS_PER_RUN, Scheduler
from jobengine.schedules import firing, registry
from jobengine.schedules.definition import JobTemplate, Overlap, ScheduleSpec, jitter
from jobengine.schedules.errors import InvalidCadence, InvalidSchedule, ScheduleNameTaken
from jobengine.schedules.slots import Cadence
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import DispatchRef, JobsRepository

T0 = datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> datetime:
        self.now += by
        return self.now


class RecordingBroker:
    def __init__(self) -> None:
        self.published: list[int] = []

    def publish(self, ref: DispatchRef, countdown: float | None = None) -> None:
        self.published.append(ref.id)

    def publish_chunk(self, refs: Sequence[DispatchRef]) -> None:
        self.published.extend(r.id for r in refs)


def reaper(
    engine: Engine, name: str, clock: Clock, broker: RecordingBroker | None = None
) -> Reaper:
    return Reaper(
        engine,
        broker or RecordingBroker(),
        Executor(engine, lease_ttl_seconds=30),
        name=name,
        redispatch_after_seconds=600,
        dispatch_grace_seconds=0,
        clock=clock,
    )


def spec(
    cron: str | None = "* * * * *",
    *,
    interval_seconds: int | None = None,
    zone: str = "UTC",
    name: str = "every-minute",
    **kw: Any,
) -> ScheduleSpec:
    return ScheduleSpec(
        name=name,
        cadence=Cadence.parse(cron=cron, interval_seconds=interval_seconds, zone=zone),
        job=JobTemplate(type="noop", payload={"report": name}),
        tenant_id="shop",
        project_id="reports",
        **kw,
    )


def create(engine: Engine, wanted: ScheduleSpec, now: datetime) -> int:
    with transaction(engine) as conn:
        return registry.create(conn, wanted, now=now).id


def slot_jobs(engine: Engine, schedule_id: int) -> list[tuple[datetime, int]]:
    """(slot, job id) of every job the schedule created, by slot."""
    with transaction(engine) as conn:
        rows = conn.execute(
            text(
                "SELECT scheduled_for, id FROM jobs WHERE idempotency_key LIKE :key"
                " ORDER BY scheduled_for, id"
            ),
            {"key": f"schedule:{schedule_id}:%"},
        )
        return [(r[0], r[1]) for r in rows]


def decisions(engine: Engine, schedule_id: int) -> list[tuple[datetime, str, str | None]]:
    with transaction(engine) as conn:
        rows = conn.execute(
            text(
                "SELECT slot_at, outcome, reason FROM schedule_slots"
                " WHERE schedule_id = :id ORDER BY slot_at"
            ),
            {"id": schedule_id},
        )
        return [(r[0], r[1], r[2]) for r in rows]


def minutes(first: datetime, count: int) -> list[datetime]:
    start = first.replace(second=0, microsecond=0)
    return [start + n * MINUTE for n in range(count)]


def finish(engine: Engine, job_id: int) -> None:
    with transaction(engine) as conn:
        guard.transition(conn, job_id, Step(JobStatus.CANCELLED, "test finished it"))


def expire_lease(engine: Engine) -> None:
    """The leader froze: its lease row ran out while its process did not notice."""
    with transaction(engine) as conn:
        conn.execute(text("UPDATE leadership SET expires_at = now() - interval '1 second'"))


def test_a_per_minute_schedule_fires_each_slot_once_across_a_leader_failover(
    engine: Engine,
) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, spec(overlap=Overlap.ALLOW), clock.now)
    first, second = reaper(engine, "reaper-a", clock), reaper(engine, "reaper-b", clock)
    for _ in range(5):
        clock.advance(MINUTE)
        assert first.tick().leader
        assert not second.tick().leader
    expire_lease(engine)
    for _ in range(5):
        clock.advance(MINUTE)
        assert second.tick().leader
        assert not first.tick().leader  # the old leader wakes and is fenced off
    expected = minutes(T0 + MINUTE, 10)
    jobs = slot_jobs(engine, schedule_id)
    assert [slot for slot, _ in jobs] == expected
    assert [(slot, outcome) for slot, outcome, _ in decisions(engine, schedule_id)] == [
        (slot, "fired") for slot in expected
    ]


def test_a_leader_that_takes_over_late_fires_the_slots_missed_meanwhile_once(
    engine: Engine,
) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, spec(overlap=Overlap.ALLOW), clock.now)
    first, second = reaper(engine, "reaper-a", clock), reaper(engine, "reaper-b", clock)
    clock.advance(MINUTE)
    first.tick()
    expire_lease(engine)
    clock.advance(3 * MINUTE)  # within the catch-up window (300 s)
    report = second.tick()
    assert len(report.fired) == 3
    first.tick()
    assert [slot for slot, _ in slot_jobs(engine, schedule_id)] == minutes(T0 + MINUTE, 4)


class Unfenced(Leadership):
    """Two leaders at once, as a partition could make for a moment: neither checks."""

    def ensure(self) -> None:
        return None

    def fence(self, conn: Connection) -> None:
        return None


def test_two_leaders_at_once_still_fire_each_slot_once(engine: Engine) -> None:
    clock = Clock(T0)
    ids = [
        create(engine, spec(name=f"report-{n}", overlap=Overlap.ALLOW), clock.now) for n in range(4)
    ]
    schedulers = [
        Scheduler(
            engine,
            RecordingBroker(),
            Unfenced(engine, f"split-{n}", 15.0),
            actor=f"split-{n}",
            clock=clock,
        )
        for n in range(2)
    ]
    errors: list[BaseException] = []

    def tick(scheduler: Scheduler, start: threading.Barrier) -> None:
        start.wait()
        try:
            scheduler.run(TickReport(leader=True))
        except BaseException as exc:
            errors.append(exc)

    for _ in range(5):
        clock.advance(MINUTE)
        start = threading.Barrier(2)
        threads = [threading.Thread(target=tick, args=(s, start)) for s in schedulers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
    for schedule_id in ids:
        assert [slot for slot, _ in slot_jobs(engine, schedule_id)] == minutes(T0 + MINUTE, 5)
        assert len(decisions(engine, schedule_id)) == 5


def test_a_crash_mid_tick_leaves_nothing_and_the_next_tick_fires_each_slot_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, spec(overlap=Overlap.ALLOW), clock.now)
    real_submit = submission.submit
    calls: list[int] = []

    def crashing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the leader died here")
        return real_submit(*args, **kwargs)

    monkeypatch.setattr(firing, "submit", crashing)
    clock.advance(4 * MINUTE)
    report = reaper(engine, "reaper-a", clock).tick()
    assert report.set_aside == [schedule_id]
    assert report.next_slot_in_seconds is None  # a schedule set aside does not spin the loop
    assert slot_jobs(engine, schedule_id) == []
    assert decisions(engine, schedule_id) == []
    monkeypatch.setattr(firing, "submit", real_submit)
    expire_lease(engine)
    reaper(engine, "reaper-b", clock).tick()
    assert [slot for slot, _ in slot_jobs(engine, schedule_id)] == minutes(T0 + MINUTE, 4)


def run_day(engine: Engine, clock: Clock, end: datetime, step: timedelta) -> None:
    ticking = reaper(engine, "reaper-a", clock)
    while clock.now < end:
        clock.advance(step)
        assert ticking.tick().leader


@pytest.mark.parametrize(
    ("zone", "cron", "day_start", "expected"),
    [
        ("Europe/Berlin", "30 2 * * *", "2026-03-28T23:00:00Z", ["2026-03-29T01:00:00+00:00"]),
        ("Europe/Berlin", "30 2 * * *", "2026-10-24T22:00:00Z", ["2026-10-25T00:30:00+00:00"]),
        ("America/New_York", "30 2 * * *", "2026-03-08T05:00:00Z", ["2026-03-08T07:00:00+00:00"]),
        ("America/New_York", "30 1 * * *", "2026-11-01T04:00:00Z", ["2026-11-01T05:30:00+00:00"]),
    ],
)
def test_a_daily_job_fires_once_on_a_daylight_saving_day(
    engine: Engine, zone: str, cron: str, day_start: str, expected: list[str]
) -> None:
    start = datetime.fromisoformat(day_start)
    clock = Clock(start)
    wanted = spec(cron, zone=zone, catch_up_seconds=7200)  # the test ticks hourly
    schedule_id = create(engine, wanted, start - timedelta(seconds=1))
    run_day(engine, clock, start + timedelta(hours=25), HOUR)
    assert [slot.isoformat() for slot, _ in slot_jobs(engine, schedule_id)] == expected


@pytest.mark.parametrize(
    ("zone", "day_start", "hours", "count"),
    [
        ("Europe/Berlin", "2026-03-28T23:00:00Z", 23, 92),
        ("Europe/Berlin", "2026-10-24T22:00:00Z", 25, 100),
        ("America/New_York", "2026-03-08T05:00:00Z", 23, 92),
        ("America/New_York", "2026-11-01T04:00:00Z", 25, 100),
    ],
)
def test_a_quarter_hourly_job_fires_by_elapsed_time_on_a_daylight_saving_day(
    engine: Engine, zone: str, day_start: str, hours: int, count: int
) -> None:
    start = datetime.fromisoformat(day_start)
    clock = Clock(start - timedelta(seconds=1))
    wanted = spec("*/15 * * * *", zone=zone, overlap=Overlap.ALLOW, catch_up_seconds=7200)
    schedule_id = create(engine, wanted, clock.now - timedelta(seconds=1))
    run_day(engine, clock, start + timedelta(hours=hours) - MINUTE, HOUR)
    slots = [slot for slot, _ in slot_jobs(engine, schedule_id)]
    assert len(slots) == count
    assert slots == [start + n * timedelta(minutes=15) for n in range(count)]


def test_skip_records_the_slots_that_come_while_the_last_job_runs(engine: Engine) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, spec(overlap=Overlap.SKIP), clock.now)
    ticking = reaper(engine, "reaper-a", clock)
    clock.advance(MINUTE)
    [first] = ticking.tick().fired
    clock.advance(MINUTE)
    assert ticking.tick().fired == []
    finish(engine, first)
    clock.advance(MINUTE)
    assert len(ticking.tick().fired) == 1
    slots = minutes(T0 + MINUTE, 3)
    assert decisions(engine, schedule_id) == [
        (slots[0], "fired", None),
        (slots[1], "skipped", "overlap"),
        (slots[2], "fired", None),
    ]


def test_buffer_one_holds_one_slot_until_the_last_job_is_final_and_skips_the_rest(
    engine: Engine,
) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, spec(overlap=Overlap.BUFFER_ONE), clock.now)
    ticking = reaper(engine, "reaper-a", clock)
    clock.advance(3 * MINUTE)
    [first] = ticking.tick().fired
    slots = minutes(T0 + MINUTE, 4)
    assert decisions(engine, schedule_id) == [
        (slots[0], "fired", None),
        (slots[1], "buffered", None),
        (slots[2], "skipped", "overlap"),
    ]
    clock.advance(timedelta(seconds=10))
    assert ticking.tick().fired == []  # still running: the buffered slot waits
    finish(engine, first)
    clock.advance(timedelta(seconds=10))
    [buffered] = ticking.tick().fired
    assert slot_jobs(engine, schedule_id) == [(slots[0], first), (slots[1], buffered)]
    clock.advance(MINUTE)  # slot 4 comes while the buffered slot's job runs: it is buffered
    ticking.tick()
    assert decisions(engine, schedule_id)[1] == (slots[1], "fired", None)
    assert decisions(engine, schedule_id)[3] == (slots[3], "buffered", None)


def test_allow_fires_every_slot_whatever_runs(engine: Engine) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, spec(overlap=Overlap.ALLOW), clock.now)
    clock.advance(3 * MINUTE)
    assert len(reaper(engine, "reaper-a", clock).tick().fired) == 3
    assert {outcome for _, outcome, _ in decisions(engine, schedule_id)} == {"fired"}


def test_a_paused_schedule_fires_nothing_and_resuming_does_not_fire_the_paused_slots(
    engine: Engine,
) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, spec(overlap=Overlap.ALLOW), clock.now)
    ticking = reaper(engine, "reaper-a", clock)
    clock.advance(MINUTE)
    assert len(ticking.tick().fired) == 1
    with transaction(engine) as conn:
        registry.set_paused(conn, schedule_id, True, now=clock.now)
    for _ in range(3):
        clock.advance(MINUTE)
        assert ticking.tick().fired == []
    with transaction(engine) as conn:
        resumed = registry.set_paused(conn, schedule_id, False, now=clock.now)
    assert resumed.next_slot_at == minutes(clock.now, 2)[1]
    assert ticking.tick().fired == []
    clock.advance(MINUTE)
    assert len(ticking.tick().fired) == 1
    assert [slot for slot, _ in slot_jobs(engine, schedule_id)] == [
        minutes(T0, 2)[1],
        minutes(clock.now, 1)[0],
    ]


def test_editing_a_schedule_fires_nothing_even_when_its_new_cadence_has_passed_slots(
    engine: Engine,
) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, spec("0 * * * *"), clock.now)
    ticking = reaper(engine, "reaper-a", clock)
    clock.advance(10 * MINUTE)
    assert ticking.tick().fired == []
    with transaction(engine) as conn:
        edited = registry.update(conn, schedule_id, spec("* * * * *"), now=clock.now)
    assert edited.next_slot_at == minutes(clock.now, 2)[1]
    assert ticking.tick().fired == []
    assert decisions(engine, schedule_id) == []


def test_slots_older_than_the_catch_up_window_are_recorded_as_missed(engine: Engine) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, spec(catch_up_seconds=300), clock.now)
    clock.advance(20 * MINUTE)  # the fleet was down
    report = reaper(engine, "reaper-a", clock).tick()
    outcomes = [(outcome, reason) for _, outcome, reason in decisions(engine, schedule_id)]
    assert (
        outcomes
        == [("skipped", "missed")] * 15 + [("fired", None)] * 1 + [("skipped", "overlap")] * 4
    )
    assert report.slots_skipped == 19


def test_a_schedule_far_behind_catches_up_over_several_bounded_ticks(engine: Engine) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, spec(overlap=Overlap.ALLOW, catch_up_seconds=86_400), clock.now)
    clock.advance(500 * MINUTE)
    ticking = reaper(engine, "reaper-a", clock)
    reports = [ticking.tick() for _ in range(4)]
    assert [len(r.fired) for r in reports] == [firing.SLOTS_PER_TICK, firing.SLOTS_PER_TICK, 100, 0]
    assert [r.next_slot_in_seconds for r in reports[:2]] == [0.0, 0.0]  # behind: tick again soon
    assert reports[2].next_slot_in_seconds == 30.0  # caught up: wake for the next slot
    assert len(slot_jobs(engine, schedule_id)) == 500


def test_a_jittered_slot_waits_a_delay_drawn_from_the_schedule_and_the_slot(
    engine: Engine,
) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, spec(overlap=Overlap.ALLOW, jitter_seconds=40), clock.now)
    leadership = Leadership(engine, "scheduler-only", 15.0)
    assert leadership.acquire()
    scheduler = Scheduler(engine, RecordingBroker(), leadership, actor="test", clock=clock)
    clock.advance(3 * MINUTE)
    report = TickReport(leader=True)
    scheduler.run(report)  # no promoter here: the jobs wait in pending for their delay
    with transaction(engine) as conn:
        rows = conn.execute(
            text("SELECT id, status, scheduled_for, not_before FROM jobs ORDER BY id")
        ).all()
    assert [row.id for row in rows] == report.fired
    assert {row.status for row in rows} == {"pending"}
    for row in rows:
        assert row.not_before == row.scheduled_for + jitter(schedule_id, row.scheduled_for, 40)
        assert timedelta() <= row.not_before - row.scheduled_for <= 40 * SECOND


def test_a_slots_job_is_published_at_once_and_shows_its_slot(engine: Engine) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, spec(), clock.now)
    broker = RecordingBroker()
    clock.advance(MINUTE)
    [fired] = reaper(engine, "reaper-a", clock, broker).tick().fired
    assert broker.published == [fired]
    with transaction(engine) as conn:
        job = JobsRepository(conn).get(fired)
    assert job.scheduled_for == minutes(T0, 2)[1]
    assert job.status is JobStatus.SCHEDULED
    assert slot_jobs(engine, schedule_id) == [(job.scheduled_for, fired)]


def test_a_schedule_past_its_end_stops(engine: Engine) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, spec(end_at=T0 + 3 * MINUTE), clock.now)
    clock.advance(10 * MINUTE)
    reaper(engine, "reaper-a", clock).tick()
    with transaction(engine) as conn:
        ended = registry.get(conn, schedule_id)
    assert ended.next_slot_at is None
    assert [slot for slot, _, _ in decisions(engine, schedule_id)] == minutes(T0 + MINUTE, 3)


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    with transaction(engine) as connection:
        yield connection


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"cron": "61 * * * *", "interval_seconds": None}, "cron"),
        ({"cron": "0 2 * * *", "interval_seconds": None, "zone": "Mars/Olympus"}, "zone"),
    ],
)
def test_a_bad_cadence_is_refused_naming_its_field(arguments: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidCadence) as refused:
        Cadence.parse(**arguments)
    assert refused.value.field == field


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": " "}, "name"),
        ({"start_at": T0, "end_at": T0}, "endAt"),
        ({"jitter_seconds": -1}, "jitterSeconds"),
        ({"catch_up_seconds": 0}, "catchUpSeconds"),
        ({"start_at": datetime(2026, 1, 1)}, "startAt"),
    ],
)
def test_a_schedule_with_a_bad_field_is_refused_naming_it_and_nothing_is_written(
    conn: Connection, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidSchedule) as refused:
        registry.create(conn, spec(**changes), now=T0)
    assert refused.value.field == field
    assert registry.list_schedules(conn) == []


def test_a_schedule_of_an_unknown_type_or_a_taken_name_is_refused(conn: Connection) -> None:
    with pytest.raises(UnknownJobType):
        registry.create(
            conn,
            ScheduleSpec(name="x", cadence=spec().cadence, job=JobTemplate(type="nope")),
            now=T0,
        )
    registry.create(conn, spec(), now=T0)
    with pytest.raises(ScheduleNameTaken):
        registry.create(conn, spec(), now=T0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_whatever_the_ticks_timing_and_failovers_every_slot_is_decided_once_in_order(
    engine: Engine, seed: int
) -> None:
    """Ticks come at random intervals (seconds to minutes), leaders change at random: every
    slot up to the last tick is decided exactly once; those within the catch-up window fire."""
    rng = random.Random(seed)
    clock = Clock(T0)
    schedule_id = create(
        engine, spec("*/2 * * * *", overlap=Overlap.ALLOW, catch_up_seconds=240), clock.now
    )
    reapers = [reaper(engine, name, clock) for name in ("reaper-a", "reaper-b", "reaper-c")]
    ticks: list[datetime] = []
    for _ in range(40):
        clock.advance(timedelta(seconds=rng.choice([5, 30, 90, 200, 400])))
        if rng.random() < 0.2:
            expire_lease(engine)
        for candidate in rng.sample(reapers, len(reapers)):
            if candidate.tick().leader:
                ticks.append(clock.now)
    decided = decisions(engine, schedule_id)
    first = T0.replace(second=0) + 2 * MINUTE
    expected = [first + n * 2 * MINUTE for n in range(int((clock.now - first) / MINUTE) // 2 + 1)]
    assert [slot for slot, _, _ in decided] == expected
    for slot, outcome, reason in decided:
        seen = min(tick for tick in ticks if tick >= slot)  # the tick that decided it
        late = seen - slot > timedelta(seconds=240)
        assert (outcome, reason) == (("skipped", "missed") if late else ("fired", None))
    fired = [slot for slot, outcome, _ in decided if outcome == "fired"]
    assert [slot for slot, _ in slot_jobs(engine, schedule_id)] == fired


def test_a_tick_decides_a_bounded_number_of_slots_over_all_schedules(engine: Engine) -> None:
    clock = Clock(T0)
    ids = [
        create(
            engine,
            spec(name=f"busy-{n}", overlap=Overlap.ALLOW, catch_up_seconds=86_400),
            clock.now,
        )
        for n in range(8)
    ]
    clock.advance(150 * MINUTE)  # 8 x 150 slots due
    ticking = reaper(engine, "reaper-a", clock)
    first = ticking.tick()
    assert len(first.fired) == SLOTS_PER_RUN
    assert first.next_slot_in_seconds == 0.0
    assert len(ticking.tick().fired) == 8 * 150 - SLOTS_PER_RUN
    for schedule_id in ids:
        assert len(slot_jobs(engine, schedule_id)) == 150
