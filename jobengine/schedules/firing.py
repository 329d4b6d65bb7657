"""Deciding a schedule's due slots, in the leader's fenced transaction (one per schedule).

Exactly once per slot, by three locks that each suffice alone: the schedule's row is locked
and its ``next_slot_at`` read under the lock, so two leaders for a moment take turns and the
second finds the slots decided; ``schedule_slots``' primary key refuses a slot decided twice
(the transaction then rolls back whole); and each slot's job carries the idempotency key
(schedule, slot), so even a job submitted twice is one job. A crash mid-tick rolls back the
slots, their jobs and the schedule's move together, and the next leader decides them again.

Each slot due, oldest first: older than the catch-up window, it is skipped as ``missed``;
else while the job of the slot before is not final, the overlap policy holds it (skipped as
``overlap``, or buffered once); else its job is created through the normal submission path
(and a refusal, a quota or a type gone from the catalogue, skips it, naming the error).
At most ``limit`` slots per call, so a schedule far behind catches up over several ticks.
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
REASON_MAX = 500
MISSED, OVERLAP = "missed", "overlap"
_JUST = timedelta(microseconds=1)


@dataclass
class Decided:
    """What one schedule's call did: the jobs it created (to publish after commit)."""

    jobs: list[Job] = field(default_factory=list)
    skipped: int = 0
    slots: int = 0
    """Slots decided (fired, skipped or buffered), the buffered one fired included."""
    behind: bool = False
    """Slots are still due after this call's ``limit``: the next tick should come soon."""


Decision = tuple[SlotOutcome, str | None, int | None]
"""A slot's outcome, the reason it was skipped, and the job it fired."""


class _Decider:
    def __init__(self, conn: Connection, schedule: Schedule, *, actor: str, last_final: bool):
        self.conn = conn
        self.schedule = schedule
        self.actor = actor
        self.last_final = last_final
        self.buffered = schedule.buffered_slot_at
        self.decided = Decided()

    def fire(self, slot: datetime) -> Decision:
        new = self.schedule.spec.new_job(self.schedule.id, slot)
        try:
            job, _ = submit(self.conn, new, actor=self.actor, dispatching=True)
        except (ValidationError, QuotaExceeded, DuplicateIdempotencyKey) as refused:
            return self.skip(f"refused: {refused.code}: {refused.message}"[:REASON_MAX])
        self.decided.jobs.append(job)
        self.last_final = False
        return SlotOutcome.FIRED, None, job.id

    def skip(self, reason: str) -> Decision:
        self.decided.skipped += 1
        return SlotOutcome.SKIPPED, reason, None

    def due(self, slot: datetime, late: datetime) -> Decision:
        overlap = self.schedule.spec.overlap
        if slot < late:
            return self.skip(MISSED)
        if overlap is Overlap.ALLOW or self.last_final:
            return self.fire(slot)
        if overlap is Overlap.BUFFER_ONE and self.buffered is None:
            self.buffered = slot
            return SlotOutcome.BUFFERED, None, None
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
    final: bool = conn.exec_driver_sql(q.JOB_IS_FINAL, {"id": schedule.last_job_id}).scalar_one()
    decider = _Decider(conn, schedule, actor=actor, last_final=final)
    if schedule.buffered_slot_at is not None and decider.last_final:
        outcome, reason, job_id = decider.fire(schedule.buffered_slot_at)
        settled = {"outcome": outcome.value, "reason": reason, "job_id": job_id}
        conn.exec_driver_sql(
            q.SETTLE_BUFFERED,
            settled | {"schedule_id": schedule.id, "slot_at": schedule.buffered_slot_at},
        )
        decider.buffered = None
        decider.decided.slots += 1
    due: list[datetime] = []
    if schedule.next_slot_at is not None and schedule.next_slot_at <= now:
        end = now + _JUST if spec.end_at is None else min(now + _JUST, spec.end_at)
        due = list(islice(slots_between(spec.cadence, schedule.next_slot_at, end), limit + 1))
        decider.decided.behind = len(due) > limit
        due = due[:limit]
        decider.decided.slots += len(due)
    late = now - timedelta(seconds=spec.catch_up_seconds)
    rows = []
    for slot in due:
        outcome, reason, job_id = decider.due(slot, late)
        rows.append(
            {"slot_at": slot.isoformat(), "outcome": outcome, "reason": reason, "job_id": job_id}
        )
    if not due and decider.buffered == schedule.buffered_slot_at:
        return decider.decided
    if rows:
        conn.exec_driver_sql(
            q.RECORD_SLOTS, {"schedule_id": schedule.id, "slots": json.dumps(rows)}
        )
    following = next_slot(spec.cadence, due[-1]) if due else schedule.next_slot_at
    if following is not None and spec.end_at is not None and following >= spec.end_at:
        following = None
    jobs = decider.decided.jobs
    conn.exec_driver_sql(
        q.ADVANCE_SCHEDULE,
        {
            "id": schedule.id,
            "next_slot_at": following,
            "last_slot_at": due[-1] if due else None,
            "last_job_id": jobs[-1].id if jobs else None,
            "buffered_slot_at": decider.buffered,
            "fired": len(jobs),
            "skipped": decider.decided.skipped,
        },
    )
    return decider.decided
