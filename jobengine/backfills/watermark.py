"""A source's watermark: the latest slot such that it and every earlier slot completed.

The leader moves it from the jobs themselves (never the completion path: a worker finishing
a slot's job writes nothing of backfills). From the watermark it walks the source's next slot
rows in time order while each is the cadence's next slot and its job completed; the first
that is not (failed, cancelled, still queued or running, or a slot with no job at all: a gap)
holds it, and is recorded as ``held_at``. A failed slot replayed from the dead-letter queue
completes as the same job, and the next walk passes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from jobengine.backfills.model import CadenceSpec
from jobengine.backfills.plan import cadence_of
from jobengine.backfills.repository import BackfillRepository
from jobengine.domain.status import JobStatus
from jobengine.schedules.slots import next_slot

MOST = 1_000
"""Slot rows one walk reads at most: a source far behind catches up this many a tick."""
FIRST_PAGE = 16
"""A walk reads pages from this size, doubling while every slot read completed, so a source
held by a failed slot costs a few rows a tick, not ``MOST``."""


@dataclass(frozen=True, slots=True)
class Walk:
    watermark: datetime | None
    held_at: datetime | None
    moved: bool
    more: bool
    """Every slot of ``MOST`` read completed: the next walk goes on from here."""


def walk(conn: Connection, source: dict[str, Any]) -> Walk:
    """Move one source's watermark over the slots completed since; ``source`` is a row of
    ``sources_behind``."""
    repo = BackfillRepository(conn)
    cadence = cadence_of(CadenceSpec(source["cron"], source["interval_seconds"], source["zone"]))
    was: datetime | None = source["watermark"]
    mark = was
    # The slot that must come next; where the walk stops, it is the one that holds the mark.
    expected = None if was is None else next_slot(cadence, was)
    blocked, read, page = False, 0, FIRST_PAGE
    while not blocked and read < MOST:
        want = min(page, MOST - read)
        rows = repo.slots_after(source["id"], mark, want)
        read += len(rows)
        for at, status in rows:
            if expected is not None and at != expected:  # the expected slot has no job: a gap
                blocked = True
                break
            if status != JobStatus.COMPLETED.value:
                expected, blocked = at, True
                break
            mark, expected = at, next_slot(cadence, at)
        if len(rows) < want:  # no slot row after these: the next slot is not created yet
            break
        page *= 2
    if mark != was or expected != source["held_at"]:
        repo.set_watermark(source["id"], was, mark, expected)
    return Walk(mark, expected, mark != was, not blocked and read >= MOST)
