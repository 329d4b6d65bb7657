"""Deciding a schedule's due slots, in the leader's fenced transaction (one per schedule).

Exactly once per slot, by three locks that each suffice alone: the schedule's row is locked
and its ``next_slot_at`` read under the lock, so two leaders for a moment take turns and the
second finds the slots decided; ``schedule_slots``' primary key refuses a slot decided twice
(the transaction then rolls back whole); and each slot's job, or run, carries the idempotency
key (schedule, slot), so even one submitted twice is one. A crash mid-tick rolls back the
slots, their jobs and runs and the schedule's move together, and the next leader decides them
again.

Each slot due, oldest first: older than the catch-up window, it is skipped as ``missed``;
else while the job or run of the slot before is not final, the overlap policy holds it
(skipped as ``overlap``, or buffered once); else its job is created through the normal
submission path, or its run through ``runs.service.submit_run`` (a refusal, a quota or a type
gone from the catalogue, skips it, naming the error). At most ``limit`` slots per call, and no
more once they made ``JOBS_PER_TICK`` jobs (runs of many jobs), so a schedule far behind
catches up over several ticks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice

from sqlalchemy import Connection

from jobengine.domain.job import Job
from jobengine.errors import DuplicateIdempotencyKey, ValidationError
from jobengine.quotas.errors import QuotaExceeded
from jobengine.runs.service import submit_run
from jobengine.schedules.definition import (
    Overlap,
    Schedule,
    SlotOutcome,
    schedule_from_row,
)
from jobengine.schedules.slots import next_slot, slots_between
from jobengine.store import schedule_queries as q
from jobengine.submission import submit

SLOTS_PER_TICK = 200
JOBS_PER_TICK = 1_000
"""A call stops deciding once its slots created this many jobs (a schedule of runs far
behind: a template of 1,000 jobs fires one run a call, not 200), and goes on next tick.
Slots it skips cost no job, so a week of missed slots still passes in a few ticks."""
REASON_MAX = 500
MISSED, OVERLAP = "missed", "overlap"
_JUST = timedelta(microseconds=1)
_REFUSALS = (ValidationError, QuotaExceeded, DuplicateIdempotencyKey)


@dataclass
class Decided:
    """What one schedule's call did: the jobs it created, a run's among them (its roots are
    published after commit, the rest wait for their parents)."""

    jobs: list[Job] = field(default_factory=list)
    fired: int = 0
    """Slots fired (each one job or one run)."""
    skipped: int = 0
    slots: int = 0
    """Slots decided (fired, skipped or buffered), the buffered one fired included."""
    behind: bool = False
    """Slots are still due after this call's ``limit``: the next tick should come soon."""
    last_job_id: int | None = None
    last_run_id: int | None = None
    """What the last slot fired created: the overlap policy's next question."""


@dataclass(frozen=True, slots=True)
class Decision:
    """A slot's outcome, the reason it was skipped, and the job or run it fired."""

    outcome: SlotOutcome
    reason: str | None = None
    job_id: int | None = None
    run_id: int | None = None

    def record(self, slot: datetime) -> dict[str, object]:
        """The slot's row in ``RECORD_SLOTS``' recordset."""
        return {
            "slot_at": slot.isoformat(),
            "outcome": self.outcome.value,
            "reason": self.reason,
            "job_id": self.job_id,
            "run_id": self.run_id,
        }


class _Decider:
    def __init__(self, conn: Connection, schedule: Schedule, *, actor: str, last_final: bool):
        self.conn = conn
        self.schedule = schedule
        self.actor = actor
        self.last_final = last_final
        self.buffered = schedule.buffered_slot_at
        self.decided = Decided()

    def fire(self, slot: datetime) -> Decision:
        spec = self.schedule.spec
        try:
            if spec.run is not None:
                run, jobs = submit_run(
                    self.conn,
                    spec.new_run(self.schedule.id, slot),
                    actor=self.actor,
                    dispatching=True,
                    scheduled_for=slot,
                )
                decision = Decision(SlotOutcome.FIRED, run_id=run.id)
            else:
                job, _ = submit(
                    self.conn,
                    spec.new_job(self.schedule.id, slot),
                    actor=self.actor,
                    dispatching=True,
                )
                jobs, decision = [job], Decision(SlotOutcome.FIRED, job_id=job.id)
        except _REFUSALS as refused:
            return self.skip(f"refused: {refused.code}: {refused.message}"[:REASON_MAX])
        self.decided.jobs.extend(jobs)
        self.decided.fired += 1
        self.decided.last_job_id, self.decided.last_run_id = decision.job_id, decision.run_id
        self.last_final = False
        return decision

    def skip(self, reason: str) -> Decision:
        self.decided.skipped += 1
        return Decision(SlotOutcome.SKIPPED, reason)

    def due(self, slot: datetime, late: datetime) -> Decision:
        overlap = self.schedule.spec.overlap
        if slot < late:
            return self.skip(MISSED)
        if overlap is Overlap.ALLOW or self.last_final:
            return self.fire(slot)
        if overlap is Overlap.BUFFER_ONE and self.buffered is None:
            self.buffered = slot
            return Decision(SlotOutcome.BUFFERED)
        return self.skip(OVERLAP)


def decide_due(
    conn: Connection, schedule_id: int, now: datetime, *, actor: str, limit: int = SLOTS_PER_TICK
) -> Decided:
    """Decide the schedule's slots due at ``now`` (and its buffered one, if it may go now)."""
    row = conn.exec_driver_sql(q.LOCK_SCHEDULE, {"id": schedule_id}).mappings().first()
    if row is None or row["paused"]:
        return Decided()
    schedule = schedule_from_row(row)
    spec = schedule.spec
    final: bool = conn.exec_driver_sql(
        q.LAST_IS_FINAL, {"job_id": schedule.last_job_id, "run_id": schedule.last_run_id}
    ).scalar_one()
    decider = _Decider(conn, schedule, actor=actor, last_final=final)
    if schedule.buffered_slot_at is not None and decider.last_final:
        settled = decider.fire(schedule.buffered_slot_at).record(schedule.buffered_slot_at)
        conn.exec_driver_sql(q.SETTLE_BUFFERED, settled | {"schedule_id": schedule.id})
        decider.buffered = None
        decider.decided.slots += 1
    due: list[datetime] = []
    if schedule.next_slot_at is not None and schedule.next_slot_at <= now:
        end = now + _JUST if spec.end_at is None else min(now + _JUST, spec.end_at)
        due = list(islice(slots_between(spec.cadence, schedule.next_slot_at, end), limit + 1))
        decider.decided.behind = len(due) > limit
        due = due[:limit]
    late = now - timedelta(seconds=spec.catch_up_seconds)
    rows = []
    for slot in due:
        rows.append(decider.due(slot, late).record(slot))
        if len(decider.decided.jobs) >= JOBS_PER_TICK:
            decider.decided.behind = decider.decided.behind or len(rows) < len(due)
            due = due[: len(rows)]
            break
    decider.decided.slots += len(due)
    if not due and decider.buffered == schedule.buffered_slot_at:
        return decider.decided
    if rows:
        conn.exec_driver_sql(
            q.RECORD_SLOTS, {"schedule_id": schedule.id, "slots": json.dumps(rows)}
        )
    following = next_slot(spec.cadence, due[-1]) if due else schedule.next_slot_at
    if following is not None and spec.end_at is not None and following >= spec.end_at:
        following = None
    decided = decider.decided
    conn.exec_driver_sql(
        q.ADVANCE_SCHEDULE,
        {
            "id": schedule.id,
            "next_slot_at": following,
            "last_slot_at": due[-1] if due else None,
            "fired_any": decided.fired > 0,
            "last_job_id": decided.last_job_id,
            "last_run_id": decided.last_run_id,
            "buffered_slot_at": decider.buffered,
            "fired": decided.fired,
            "skipped": decided.skipped,
        },
    )
    return decided
