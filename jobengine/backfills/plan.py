"""A backfill's slots: its cadence parsed, its range checked, its slots counted.

Slots come from ``schedules.slots`` (the schedules' own computation, so a backfill and a
schedule of one cadence agree on every slot, daylight-saving days included). A range is
half-open, ``start <= slot < end``, so a range ending where the next begins shares no slot.
"""

from __future__ import annotations

from datetime import datetime
from itertools import islice

from jobengine.backfills.errors import BackfillInvalid, TooManySlots
from jobengine.backfills.model import BackfillSpec, CadenceSpec
from jobengine.schedules.slots import Cadence, slots_between

MAX_SLOTS = 100_000
"""The most slots one backfill may hold. Counting them is part of the request (about 20 µs
a cron slot: 2 s for 100,000), and a bigger range is as well served by consecutive
backfills of one source."""


def cadence_of(spec: CadenceSpec) -> Cadence:
    """The parsed cadence; a bad one is refused as a schedule's is (``INVALID_CADENCE``,
    naming ``cron``, ``intervalSeconds`` or ``zone``)."""
    return Cadence.parse(cron=spec.cron, interval_seconds=spec.interval_seconds, zone=spec.zone)


def check_range(start: datetime, end: datetime) -> None:
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise BackfillInvalid(
                f"{name} {value.isoformat()} has no time zone offset",
                hint="Give times with an offset, e.g. 2026-01-01T00:00:00Z.",
            )
    if end <= start:
        raise BackfillInvalid(
            f"end {end.isoformat()} is not after start {start.isoformat()}",
            hint="The range is start (included) to end (excluded); give an end after the start.",
        )


def count(spec: BackfillSpec) -> tuple[int, datetime | None, datetime | None]:
    """How many slots the range holds, its first and its last; refuses more than MAX_SLOTS."""
    check_range(spec.start, spec.end)
    total, first, last = 0, None, None
    slots = slots_between(cadence_of(spec.cadence), spec.start, spec.end)
    for slot in islice(slots, MAX_SLOTS + 1):
        total += 1
        first = first or slot
        last = slot
    if total > MAX_SLOTS:
        raise TooManySlots(MAX_SLOTS)
    return total, first, last
