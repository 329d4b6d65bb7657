"""The leader's batch: the next slots of one backfill get their jobs, in the caller's
transaction, at most ``budget`` slots walked and no more jobs than its pacing allows.

The batch holds the backfill's row (a cancel committed first stops it) and its source's row
(every writer of the source's slots takes turns), so the slots it finds without a job are
exactly the ones it creates; a slot that has one (a backfill run twice, overlapping ranges) is
counted as existing and gets nothing. Jobs, slot rows and the cursor commit together: a
leader that dies mid-batch leaves the cursor where the last committed batch put it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice

from sqlalchemy import Connection

from jobengine.backfills.model import Backfill
from jobengine.backfills.plan import cadence_of
from jobengine.backfills.repository import BackfillRepository
from jobengine.backfills.slot_jobs import slot_job
from jobengine.errors import StoreConflict
from jobengine.job_types import JobTypes
from jobengine.schedules.slots import slots_between
from jobengine.submission import submit_many


@dataclass
class Batch:
    created: list[int] = field(default_factory=list)
    """The jobs this batch created."""
    existing: int = 0
    walked: int = 0
    """Slots the cursor moved past: those created and those that had jobs already."""


def job_room(repo: BackfillRepository, backfill: Backfill, now: datetime) -> int | None:
    """How many more jobs its pacing allows now; None when it sets no limit."""
    rooms: list[int] = []
    pacing = backfill.pacing
    if pacing.max_in_flight is not None:
        rooms.append(pacing.max_in_flight - repo.open_slots(backfill.id))
    if pacing.max_per_second is not None:
        elapsed = max(0.0, (now - backfill.created_at).total_seconds())
        allowed = math.floor(pacing.max_per_second * elapsed) + 1
        rooms.append(allowed - backfill.slots_created)
    return min(rooms) if rooms else None


def create_batch(
    conn: Connection,
    backfill_id: int,
    *,
    budget: int,
    now: datetime,
    types: JobTypes,
    actor: str,
) -> Batch:
    repo = BackfillRepository(conn)
    backfill = repo.lock(backfill_id)
    batch = Batch()
    if backfill is None or backfill.cursor is None:
        return batch
    room = job_room(repo, backfill, now)
    if room is not None and room <= 0:
        return batch
    slots = slots_between(cadence_of(backfill.cadence), backfill.cursor, backfill.end)
    ahead = list(islice(slots, budget + 1))
    repo.lock_source(backfill.source_id)
    have = repo.existing(backfill.source_id, ahead[:budget])
    new: list[datetime] = []
    cursor: datetime | None = None
    for at in ahead:
        if batch.walked == budget or (at not in have and room is not None and len(new) == room):
            cursor = at
            break
        batch.walked += 1
        if at in have:
            batch.existing += 1
        else:
            new.append(at)
    if new:
        jobs = submit_many(
            conn,
            [slot_job(backfill.tenant_id, backfill.project_id, backfill.job, at) for at in new],
            types=types,
            actor=actor,
        )
        batch.created = [job.id for job, _ in jobs]
        written = repo.insert_slots(backfill.source_id, backfill.id, new, batch.created)
        if written != len(new):
            raise StoreConflict(
                f"backfill {backfill.id}: {len(new) - written} slot(s) got a job meanwhile",
                hint="Another writer of the source's slots ran at once; the next tick retries.",
            )
    repo.advance(backfill.id, cursor, len(batch.created), batch.existing)
    return batch
