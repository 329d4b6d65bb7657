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

PAGE = 1_000
"""Slot rows one walk reads: a source far behind catches up a page a tick."""


@dataclass(frozen=True, slots=True)
class Walk:
    watermark: datetime | None
    held_at: datetime | None
    moved: bool
    more: bool
    """The page was full and every slot on it completed: the next walk goes on from here."""


def walk(conn: Connection, source: dict[str, Any], page: int = PAGE) -> Walk:
    """Move one source's watermark over the slots completed since; ``source`` is a row of
    ``sources_behind``."""
    repo = BackfillRepository(conn)
    cadence = cadence_of(CadenceSpec(source["cron"], source["interval_seconds"], source["zone"]))
    was: datetime | None = source["watermark"]
    mark = was
    expected = None if was is None else next_slot(cadence, was)
    held: datetime | None = None
    rows = repo.slots_after(source["id"], was, page)
    for at, status in rows:
        if expected is not None and at != expected:
            held = expected
            break
        if status != JobStatus.COMPLETED.value:
            held = at
            break
        mark = at
        expected = next_slot(cadence, at)
    else:
        held = expected
    if mark != was or held != source["held_at"]:
        repo.set_watermark(source["id"], was, mark, held)
    return Walk(mark, held, mark != was, len(rows) == page and mark == rows[-1][0])
