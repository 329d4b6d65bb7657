"""Schedules that create a run (a DAG) per slot, on a real Postgres: one run per slot across a
failover and with two leaders at once, each job carrying its slot, only the roots published,
overlap asking the previous slot's run, and templates refused at creation, nothing written.

Time is the test's: every reaper here takes the test's clock, and the test moves it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from jobengine.domain.run import RunJobSpec, TriggerRule
from jobengine.errors import UnknownJobType
from jobengine.maintenance import Leadership
from jobengine.maintenance.report import TickReport
from jobengine.maintenance.scheduler import Scheduler
from jobengine.runs import service
from jobengine.runs.errors import RunCycle, UnknownRunKey
from jobengine.schedules import firing, registry
from jobengine.schedules.definition import (
    JobTemplate,
    Overlap,
    RunTemplate,
    ScheduleSpec,
    jitter,
)
from jobengine.schedules.errors import InvalidSchedule
from jobengine.schedules.slots import Cadence
from jobengine.store.database import transaction
from tests.integration.test_schedules import (
    MINUTE,
    T0,
    Clock,
    RecordingBroker,
    Unfenced,
    expire_lease,
    finish,
    minutes,
    reaper,
)

ETL = RunTemplate(
    name="nightly-etl",
    jobs=(
        RunJobSpec(key="extract", type="noop", payload={"source": "shop"}),
        RunJobSpec(key="clean", type="noop"),
        RunJobSpec(key="report", type="noop", trigger_rule=TriggerRule.ALL_DONE),
    ),
    edges=(("extract", "clean"), ("clean", "report")),
)


def run_spec(run: RunTemplate = ETL, *, name: str = "etl-every-minute", **kw: Any) -> ScheduleSpec:
    return ScheduleSpec(
        name=name,
        cadence=Cadence.parse(cron="* * * * *", interval_seconds=None),
        run=run,
        tenant_id="shop",
        project_id="etl",
        **kw,
    )


def create(engine: Engine, wanted: ScheduleSpec, now: datetime) -> int:
    with transaction(engine) as conn:
        return registry.create(conn, wanted, now=now).id


def slot_runs(engine: Engine, schedule_id: int) -> list[tuple[datetime, int, str]]:
    """(slot, run id, status) of every run the schedule created, by slot, read from the
    run's own idempotency key and its jobs' slot."""
    with transaction(engine) as conn:
        rows = conn.execute(
            text(
                "SELECT min(j.scheduled_for) AS slot, r.id, r.status::text AS status"
                " FROM runs AS r JOIN jobs AS j ON j.run_id = r.id"
                " WHERE r.idempotency_key LIKE :key"
                " GROUP BY r.id ORDER BY slot, r.id"
            ),
            {"key": f"schedule:{schedule_id}:%"},
        )
        return [(r.slot, r.id, r.status) for r in rows]


def decisions(
    engine: Engine, schedule_id: int
) -> list[tuple[datetime, str, str | None, int | None]]:
    with transaction(engine) as conn:
        rows = conn.execute(
            text(
                "SELECT slot_at, outcome, reason, run_id FROM schedule_slots"
                " WHERE schedule_id = :id ORDER BY slot_at"
            ),
            {"id": schedule_id},
        )
        return [(r.slot_at, r.outcome, r.reason, r.run_id) for r in rows]


def cancel(engine: Engine, run_id: int) -> None:
    with transaction(engine) as conn:
        service.cancel_run(conn, run_id, tenant_id=None, actor="test", reason="test finished it")


def test_a_run_schedule_fires_one_run_per_slot_across_a_leader_failover(engine: Engine) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, run_spec(overlap=Overlap.ALLOW), clock.now)
    first, second = reaper(engine, "reaper-a", clock), reaper(engine, "reaper-b", clock)
    for _ in range(3):
        clock.advance(MINUTE)
        assert first.tick().leader
        assert not second.tick().leader
    expire_lease(engine)
    for _ in range(3):
        clock.advance(MINUTE)
        assert second.tick().leader
        assert not first.tick().leader  # the old leader wakes and is fenced off
    expected = minutes(T0 + MINUTE, 6)
    runs = slot_runs(engine, schedule_id)
    assert [slot for slot, _, _ in runs] == expected
    assert [
        (slot, outcome, run_id) for slot, outcome, _, run_id in decisions(engine, schedule_id)
    ] == [(slot, "fired", run_id) for slot, run_id, _ in runs]
    with transaction(engine) as conn:
        schedule = registry.get(conn, schedule_id)
        jobs_per_run = conn.execute(
            text("SELECT count(*) FROM jobs WHERE run_id = ANY(:ids) GROUP BY run_id"),
            {"ids": [run_id for _, run_id, _ in runs]},
        ).scalars()
        assert set(jobs_per_run) == {3}
    assert (schedule.fired_count, schedule.last_run_id, schedule.last_job_id) == (
        6,
        runs[-1][1],
        None,
    )


def test_two_leaders_at_once_still_fire_one_run_per_slot(engine: Engine) -> None:
    clock = Clock(T0)
    ids = [
        create(engine, run_spec(name=f"etl-{n}", overlap=Overlap.ALLOW), clock.now)
        for n in range(3)
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

    for _ in range(4):
        clock.advance(MINUTE)
        start = threading.Barrier(2)
        threads = [threading.Thread(target=tick, args=(s, start)) for s in schedulers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
    for schedule_id in ids:
        assert [slot for slot, _, _ in slot_runs(engine, schedule_id)] == minutes(T0 + MINUTE, 4)


def test_each_job_of_a_slots_run_knows_its_slot_and_only_its_root_is_published(
    engine: Engine,
) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, run_spec(), clock.now)
    broker = RecordingBroker()
    clock.advance(MINUTE)
    report = reaper(engine, "reaper-a", clock, broker).tick()
    [(slot, run_id, status)] = slot_runs(engine, schedule_id)
    with transaction(engine) as conn:
        graph = service.run_graph(conn, run_id)
    by_key = {job.run_key: job for job in graph.jobs}
    assert (status, graph.run.name, graph.run.project_id) == ("running", "nightly-etl", "etl")
    assert {job.scheduled_for for job in graph.jobs} == {slot} == {minutes(T0, 2)[1]}
    assert broker.published == [by_key["extract"].id]
    assert sorted(report.fired) == sorted(job.id for job in graph.jobs)
    assert [by_key[k].status.value for k in ("extract", "clean", "report")] == [
        "scheduled",
        "pending",
        "pending",
    ]
    assert by_key["extract"].payload == {"source": "shop"}
    assert by_key["report"].trigger_rule == "all_done"


def test_skip_skips_a_slot_while_the_previous_run_is_not_final(engine: Engine) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, run_spec(overlap=Overlap.SKIP), clock.now)
    ticking = reaper(engine, "reaper-a", clock)
    clock.advance(MINUTE)
    ticking.tick()
    [(_, first, _)] = slot_runs(engine, schedule_id)
    clock.advance(MINUTE)
    assert ticking.tick().fired == []  # the first run is still running
    cancel(engine, first)
    clock.advance(MINUTE)
    assert len(ticking.tick().fired) == 3  # a run of three jobs
    slots = minutes(T0 + MINUTE, 3)
    [_, (_, second, _)] = slot_runs(engine, schedule_id)
    assert decisions(engine, schedule_id) == [
        (slots[0], "fired", None, first),
        (slots[1], "skipped", "overlap", None),
        (slots[2], "fired", None, second),
    ]


def test_buffer_one_fires_the_held_slots_run_once_the_previous_run_is_final(
    engine: Engine,
) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, run_spec(overlap=Overlap.BUFFER_ONE), clock.now)
    ticking = reaper(engine, "reaper-a", clock)
    clock.advance(3 * MINUTE)
    ticking.tick()
    [(_, first, _)] = slot_runs(engine, schedule_id)
    slots = minutes(T0 + MINUTE, 3)
    assert [outcome for _, outcome, _, _ in decisions(engine, schedule_id)] == [
        "fired",
        "buffered",
        "skipped",
    ]
    clock.advance(timedelta(seconds=10))
    assert ticking.tick().fired == []  # still running: the buffered slot waits
    cancel(engine, first)
    clock.advance(timedelta(seconds=10))
    ticking.tick()
    runs = slot_runs(engine, schedule_id)
    assert [slot for slot, _, _ in runs] == slots[:2]
    assert decisions(engine, schedule_id)[1] == (slots[1], "fired", None, runs[1][1])


def test_a_crash_mid_tick_leaves_no_run_and_the_next_leader_fires_each_slot_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, run_spec(overlap=Overlap.ALLOW), clock.now)
    real_submit_run = firing.submit_run
    calls: list[int] = []

    def crashing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the leader died here")
        return real_submit_run(*args, **kwargs)

    monkeypatch.setattr(firing, "submit_run", crashing)
    clock.advance(4 * MINUTE)
    assert reaper(engine, "reaper-a", clock).tick().set_aside == [schedule_id]
    assert slot_runs(engine, schedule_id) == []
    with transaction(engine) as conn:
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar_one() == 0
    monkeypatch.setattr(firing, "submit_run", real_submit_run)
    expire_lease(engine)
    reaper(engine, "reaper-b", clock).tick()
    assert [slot for slot, _, _ in slot_runs(engine, schedule_id)] == minutes(T0 + MINUTE, 4)


def test_a_jittered_run_schedule_delays_every_job_of_the_slots_run_alike(engine: Engine) -> None:
    clock = Clock(T0)
    schedule_id = create(engine, run_spec(jitter_seconds=40), clock.now)
    leadership = Leadership(engine, "scheduler-only", 15.0)
    assert leadership.acquire()
    scheduler = Scheduler(engine, RecordingBroker(), leadership, actor="test", clock=clock)
    clock.advance(MINUTE)
    scheduler.run(TickReport(leader=True))  # no promoter here: the root waits for its delay
    [(slot, run_id, _)] = slot_runs(engine, schedule_id)
    with transaction(engine) as conn:
        graph = service.run_graph(conn, run_id)
    delay = jitter(schedule_id, slot, 40)
    assert delay > timedelta()
    assert {job.not_before for job in graph.jobs} == {slot + delay}
    assert {job.status.value for job in graph.jobs} == {"pending"}


def test_a_job_schedule_edited_into_a_run_schedule_waits_for_its_last_job(engine: Engine) -> None:
    clock = Clock(T0)
    job_spec = ScheduleSpec(
        name="etl-every-minute",
        cadence=Cadence.parse(cron="* * * * *", interval_seconds=None),
        job=JobTemplate(type="noop"),
        tenant_id="shop",
        project_id="etl",
    )
    schedule_id = create(engine, job_spec, clock.now)
    ticking = reaper(engine, "reaper-a", clock)
    clock.advance(MINUTE)
    [job_id] = ticking.tick().fired
    with transaction(engine) as conn:
        edited = registry.update(conn, schedule_id, run_spec(), now=clock.now)
    assert (edited.spec.job, edited.spec.run, edited.last_job_id) == (None, ETL, job_id)
    clock.advance(MINUTE)
    assert ticking.tick().fired == []  # the job of the slot before still runs: skipped
    finish(engine, job_id)
    clock.advance(MINUTE)
    assert len(ticking.tick().fired) == 3
    assert len(slot_runs(engine, schedule_id)) == 1


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    with transaction(engine) as connection:
        yield connection


def test_a_cyclic_run_template_is_refused_at_creation_naming_the_cycle(conn: Connection) -> None:
    cyclic = RunTemplate(
        name="loop",
        jobs=ETL.jobs,
        edges=(("extract", "clean"), ("clean", "report"), ("report", "clean")),
    )
    with pytest.raises(RunCycle) as refused:
        registry.create(conn, run_spec(cyclic), now=T0)
    assert "clean -> report -> clean" in refused.value.message
    assert registry.list_schedules(conn) == []


def test_an_edge_to_a_key_outside_the_run_is_refused_naming_it(conn: Connection) -> None:
    stray = RunTemplate(name="stray", jobs=ETL.jobs, edges=(("extract", "load"),))
    with pytest.raises(UnknownRunKey) as refused:
        registry.create(conn, run_spec(stray), now=T0)
    assert "'load'" in refused.value.message
    assert registry.list_schedules(conn) == []


@pytest.mark.parametrize(
    ("what", "field", "says"),
    [
        ({"job": JobTemplate(type="noop"), "run": ETL}, "run", "both job and run given"),
        ({}, "job", "neither job nor run given"),
    ],
)
def test_a_schedule_with_both_or_neither_of_job_and_run_is_refused_naming_the_field(
    conn: Connection, what: dict[str, Any], field: str, says: str
) -> None:
    wanted = ScheduleSpec(
        name="confused", cadence=Cadence.parse(cron="* * * * *", interval_seconds=None), **what
    )
    with pytest.raises(InvalidSchedule) as refused:
        registry.create(conn, wanted, now=T0)
    assert refused.value.field == field
    assert says in refused.value.message
    assert registry.list_schedules(conn) == []


def test_a_run_template_whose_job_has_its_own_start_or_an_unknown_type_is_refused(
    conn: Connection,
) -> None:
    started = RunTemplate(
        name="early", jobs=(RunJobSpec(key="a", type="noop", not_before=T0),), edges=()
    )
    with pytest.raises(InvalidSchedule) as refused:
        registry.create(conn, run_spec(started), now=T0)
    assert refused.value.field == "run.jobs[0].notBefore"
    unknown = RunTemplate(name="odd", jobs=(RunJobSpec(key="a", type="teleport"),), edges=())
    with pytest.raises(UnknownJobType):
        registry.create(conn, run_spec(unknown), now=T0)
    assert registry.list_schedules(conn) == []


def test_postgres_refuses_a_schedule_row_with_both_a_job_and_a_run(conn: Connection) -> None:
    with pytest.raises(IntegrityError) as refused, conn.begin_nested():
        conn.execute(
            text(
                "INSERT INTO schedules (tenant_id, project_id, name, cron, job_type, payload,"
                " run_template) VALUES ('t', 'p', 'both', '* * * * *', 'noop', '{}',"
                ' \'{"name": "r", "jobs": [], "edges": []}\')'
            )
        )
    assert "ck_schedules_job_or_run" in str(refused.value.orig)


def test_a_schedule_of_large_runs_far_behind_fires_a_bounded_number_of_jobs_per_tick(
    engine: Engine,
) -> None:
    """Runs of 500 jobs: two a tick (``JOBS_PER_TICK``), while its missed slots, which cost
    no job, all pass in the first."""
    clock = Clock(T0)
    large = RunTemplate(
        name="fan", jobs=tuple(RunJobSpec(key=f"j{n}", type="noop") for n in range(500))
    )
    schedule_id = create(engine, run_spec(large, overlap=Overlap.ALLOW), clock.now)
    clock.advance(10 * MINUTE)  # 5 slots past the catch-up window (300 s), 5 within it
    ticking = reaper(engine, "reaper-a", clock)
    reports = [ticking.tick() for _ in range(4)]
    assert firing.JOBS_PER_TICK == 1_000
    assert [len(r.fired) for r in reports] == [1_000, 1_000, 500, 0]
    assert [r.next_slot_in_seconds for r in reports[:2]] == [0.0, 0.0]
    outcomes = [(outcome, reason) for _, outcome, reason, _ in decisions(engine, schedule_id)]
    assert outcomes == [("skipped", "missed")] * 5 + [("fired", None)] * 5
    assert [slot for slot, _, _ in slot_runs(engine, schedule_id)] == minutes(T0 + 6 * MINUTE, 5)
