"""A backfill's slots: its cadence parsed, its range checked, its slots counted.

Slots come from ``schedules.slots`` (the schedules' own computation, so a backfill and a
schedule of one cadence agree on every slot); this module only fixes the range as half-open,
``start <= slot < end``, whatever bounds ``slots_between`` includes, so a range ending where
the next begins shares no slot with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import islice

from jobengine.backfills.errors import BackfillInvalid, TooManySlots
from jobengine.backfills.model import BackfillSpec, CadenceSpec
from jobengine.schedules.slots import Cadence, slots_between

MAX_SLOTS = 100_000
"""The most slots one backfill may hold. Counting them is part of the request (about 55 µs a
cron slot), and a bigger range is as well served by consecutive backfills of one source."""

_BEFORE = timedelta(microseconds=1)


def cadence_of(spec: CadenceSpec) -> Cadence:
    if (spec.cron is None) == (spec.interval_seconds is None):
        raise BackfillInvalid(
            "give exactly one of cron and intervalSeconds",
            hint="e.g. cron '0 * * * *' (hourly) or intervalSeconds 3600.",
        )
    if spec.interval_seconds is not None and spec.interval_seconds <= 0:
        raise BackfillInvalid(
            f"intervalSeconds {spec.interval_seconds} is not positive",
            hint="Give the seconds between slots, at least 1.",
        )
    try:
        return Cadence.parse(cron=spec.cron, interval_seconds=spec.interval_seconds, zone=spec.zone)
    except (ValueError, KeyError) as exc:  # a bad expression; an unknown zone (KeyError)
        raise BackfillInvalid(
            f"cadence refused (cron {spec.cron!r}, zone {spec.zone!r}): {exc}",
            hint="Use a five-field cron expression and an IANA zone such as 'Europe/Berlin'.",
        ) from exc


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


def slots_from(cadence: Cadence, first: datetime, end: datetime) -> Iterator[datetime]:
    """The slots at or after ``first`` and before ``end``, in order, lazily."""
    for slot in slots_between(cadence, first - _BEFORE, end):
        if slot >= end:
            return
        if slot >= first:
            yield slot


def count(spec: BackfillSpec) -> tuple[int, datetime | None, datetime | None]:
    """How many slots the range holds, its first and its last; refuses more than MAX_SLOTS."""
    check_range(spec.start, spec.end)
    total, first, last = 0, None, None
    for slot in islice(slots_from(cadence_of(spec.cadence), spec.start, spec.end), MAX_SLOTS + 1):
        total += 1
        first = first or slot
        last = slot
    if total > MAX_SLOTS:
        raise TooManySlots(MAX_SLOTS)
    return total, first, last
