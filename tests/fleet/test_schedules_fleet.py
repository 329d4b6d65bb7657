"""Per-minute schedules across a leader failover, run by a real worker process: each slot
fired once (a job, or a run of two jobs), and each job's handler reads its own slot from
``ctx.scheduled_for``, a run's child as its root.

The leaders are two in-process reapers publishing to the fleet's Redis, with the test's clock
(the slots come when the test says), so no test waits a minute of real time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from jobengine.domain.run import RunJobSpec
from jobengine.execution import Executor
from jobengine.maintenance import Reaper
from jobengine.schedules import registry
from jobengine.schedules.definition import JobTemplate, Overlap, RunTemplate, ScheduleSpec
from jobengine.schedules.slots import Cadence
from jobengine.store.database import transaction
from tests.fleet.conftest import Fleet, wait_until

T0 = datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HANDLERS = json.dumps(["tests.fleet.handlers", "tests.fleet.schedule_handlers"])


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_each_slot_of_a_per_minute_schedule_runs_once_across_a_failover_and_knows_its_slot(
    fleet: Fleet,
) -> None:
    fleet.start_worker("w1", JOBENGINE_HANDLER_MODULES=HANDLERS)
    clock = Clock(T0)
    spec = ScheduleSpec(
        name="every-minute",
        cadence=Cadence.parse(cron="* * * * *", interval_seconds=None),
        job=JobTemplate(type="slot_echo"),
        overlap=Overlap.ALLOW,
    )
    with transaction(fleet.engine) as conn:
        schedule_id = registry.create(conn, spec, now=clock.now).id
    reapers = [
        Reaper(
            fleet.engine,
            fleet.publisher(),
            Executor(fleet.engine, lease_ttl_seconds=30),
            name=name,
            redispatch_after_seconds=600,
            dispatch_grace_seconds=0,
            clock=clock,
        )
        for name in ("reaper-a", "reaper-b")
    ]
    for minute in range(6):
        if minute == 3:  # the leader freezes; its lease runs out; the other takes over
            with transaction(fleet.engine) as conn:
                conn.execute(text("UPDATE leadership SET expires_at = now() - interval '1s'"))
        clock.now += MINUTE
        leading, other = reapers if minute < 3 else reversed(reapers)
        assert leading.tick().leader
        assert not other.tick().leader
    slots = [T0.replace(second=0) + n * MINUTE for n in range(1, 7)]

    def finished() -> list[tuple[datetime, str, object]]:
        with transaction(fleet.engine) as conn:
            rows = conn.execute(
                text(
                    "SELECT scheduled_for, status, result FROM jobs"
                    " WHERE idempotency_key LIKE :key ORDER BY scheduled_for"
                ),
                {"key": f"schedule:{schedule_id}:%"},
            ).all()
        return [(r[0], r[1], r[2]) for r in rows]

    wait_until(
        lambda: [status for _, status, _ in finished()] == ["completed"] * 6,
        60,
        "the six slots' jobs completed",
    )
    assert [(slot, result) for slot, _, result in finished()] == [
        (slot, {"scheduledFor": slot.isoformat()}) for slot in slots
    ]


def test_each_slot_of_a_run_schedule_runs_one_workflow_across_a_failover_whose_jobs_know_it(
    fleet: Fleet,
) -> None:
    fleet.start_worker("w1", JOBENGINE_HANDLER_MODULES=HANDLERS)
    clock = Clock(T0)
    spec = ScheduleSpec(
        name="etl-every-minute",
        cadence=Cadence.parse(cron="* * * * *", interval_seconds=None),
        run=RunTemplate(
            name="etl",
            jobs=(
                RunJobSpec(key="extract", type="slot_echo"),
                RunJobSpec(key="load", type="slot_echo"),
            ),
            edges=(("extract", "load"),),
        ),
        overlap=Overlap.ALLOW,
    )
    with transaction(fleet.engine) as conn:
        schedule_id = registry.create(conn, spec, now=clock.now).id
    reapers = [
        Reaper(
            fleet.engine,
            fleet.publisher(),
            Executor(fleet.engine, lease_ttl_seconds=30),
            name=name,
            redispatch_after_seconds=600,
            dispatch_grace_seconds=0,
            clock=clock,
        )
        for name in ("reaper-a", "reaper-b")
    ]
    for minute in range(4):
        if minute == 2:  # the leader freezes; its lease runs out; the other takes over
            with transaction(fleet.engine) as conn:
                conn.execute(text("UPDATE leadership SET expires_at = now() - interval '1s'"))
        clock.now += MINUTE
        leading, other = reapers if minute < 2 else reversed(reapers)
        assert leading.tick().leader
        assert not other.tick().leader
    slots = [T0.replace(second=0) + n * MINUTE for n in range(1, 5)]

    def runs() -> list[tuple[str, list[tuple[datetime, object]]]]:
        with transaction(fleet.engine) as conn:
            found = conn.execute(
                text(
                    "SELECT r.status::text AS status,"
                    " jsonb_agg(jsonb_build_array(j.scheduled_for, j.result) ORDER BY j.id) AS jobs"
                    " FROM runs AS r JOIN jobs AS j ON j.run_id = r.id"
                    " WHERE r.idempotency_key LIKE :key GROUP BY r.id ORDER BY r.id"
                ),
                {"key": f"schedule:{schedule_id}:%"},
            ).all()
        return [
            (r.status, [(datetime.fromisoformat(at), result) for at, result in r.jobs])
            for r in found
        ]

    wait_until(
        lambda: [status for status, _ in runs()] == ["completed"] * 4,
        60,
        "the four slots' runs completed",
    )
    assert [jobs for _, jobs in runs()] == [
        [(slot, {"scheduledFor": slot.isoformat()})] * 2 for slot in slots
    ]
