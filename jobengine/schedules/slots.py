"""The slots of a cadence: the instants a schedule fires at, computed in the schedule's zone.

A cron expression names wall-clock times, and a zone with daylight saving has wall-clock times
that happen twice or never. The rule here is Vixie cron's, the one cron users already know:

- An expression with a fixed hour (``30 2 * * *``, ``0 9,17 * * 1-5``) is **wall-clock**. A slot
  the clock skips (02:30 on the spring-forward day) fires once, at the first instant after the gap
  (03:00 local); a slot the clock repeats (02:30 on the fall-back day) fires once, at its first
  occurrence. Several skipped slots fall on the same instant, so they fire there once.
- An expression whose hour field is a wildcard or a step (``*/15 * * * *``, ``0 */2 * * *``)
  fires by **real elapsed time**: the skipped hour does not exist, so nothing fires in it, and the
  repeated hour fires again, each occurrence at its own instant. Nothing fires twice at one instant.

So on Europe/Berlin's spring-forward day ``30 2 * * *`` fires once (03:00 CEST) and
``*/15 * * * *`` fires 92 times; on its fall-back day they fire once (02:30 CEST) and 100 times.

A fixed interval is UTC arithmetic from an anchor (the Unix epoch unless one is given, so an
interval that divides a day lands on round times); its zone plays no part.

Every slot is an aware UTC datetime; slots are computed lazily, so a range of 100,000s of slots
costs memory for one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from croniter import CroniterBadDateError, CroniterError, croniter

from jobengine.schedules.errors import InvalidCadence

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INTERVAL_MAX_SECONDS = 366 * 86_400
_SECOND = timedelta(seconds=1)
_MICROSECOND = timedelta(microseconds=1)
_HORIZON = timedelta(days=1)
"""No zone skips or repeats more than a day of wall-clock time. So the wall-clock times whose
slots lie at or after an instant begin at most that far before its own: a fall-back ahead
repeats times from before it, and a gap just behind sends its skipped times to its end."""


@dataclass(frozen=True)
class Cadence:
    """A cron expression (5 fields, croniter) or a fixed interval, in an IANA zone."""

    cron: str | None
    interval_seconds: int | None
    zone: str = "UTC"
    anchor: datetime = EPOCH
    """Where an interval counts from; cron expressions ignore it."""

    @classmethod
    def parse(
        cls,
        *,
        cron: str | None,
        interval_seconds: int | None,
        zone: str = "UTC",
        anchor: datetime | None = None,
    ) -> Cadence:
        """A checked cadence; refused with an ``InvalidCadence`` naming the bad field."""
        if (cron is None) == (interval_seconds is None):
            raise InvalidCadence(
                "cron",
                "give exactly one of cron and intervalSeconds",
                hint="Set cron (e.g. '30 2 * * *') or intervalSeconds (e.g. 3600), not both.",
            )
        _zone(zone)
        if anchor is not None and anchor.utcoffset() is None:
            raise InvalidCadence(
                "anchor",
                f"{anchor.isoformat()} has no UTC offset",
                hint="Give the anchor with its offset, e.g. 2026-01-01T00:00:00Z.",
            )
        if cron is not None:
            expression = " ".join(cron.split())
            _check_cron(expression)
            return cls(cron=expression, interval_seconds=None, zone=zone)
        assert interval_seconds is not None
        if isinstance(interval_seconds, bool) or not isinstance(interval_seconds, int):
            raise InvalidCadence(
                "intervalSeconds",
                f"{interval_seconds!r} is not a whole number of seconds",
                hint="Give intervalSeconds as a positive integer, e.g. 3600.",
            )
        if not 0 < interval_seconds <= INTERVAL_MAX_SECONDS:
            raise InvalidCadence(
                "intervalSeconds",
                f"{interval_seconds} is out of range",
                hint=f"Give intervalSeconds from 1 to {INTERVAL_MAX_SECONDS} (a leap year).",
            )
        return cls(
            cron=None,
            interval_seconds=interval_seconds,
            zone=zone,
            anchor=EPOCH if anchor is None else anchor.astimezone(UTC),
        )

    @property
    def by_elapsed_time(self) -> bool:
        """Whether the repeated hour of a fall-back fires again (see the module's DST rule)."""
        if self.cron is None:
            return True
        hour = self.cron.split()[1]
        return "*" in hour or "/" in hour


def slots_between(cadence: Cadence, start: datetime, end: datetime) -> Iterator[datetime]:
    """Every slot in [start, end), aware UTC datetimes, strictly increasing, lazily (100,000s)."""
    _require_aware(start, "start")
    _require_aware(end, "end")
    for slot in _slots_from(cadence, start.astimezone(UTC)):
        if slot >= end:
            return
        yield slot


def next_slot(cadence: Cadence, after: datetime) -> datetime | None:
    """The first slot strictly after ``after`` (UTC)."""
    _require_aware(after, "after")
    return next(_slots_from(cadence, after.astimezone(UTC) + _MICROSECOND), None)


def _slots_from(cadence: Cadence, start: datetime) -> Iterator[datetime]:
    """Every slot at or after ``start``, unbounded unless the expression stops matching."""
    if cadence.interval_seconds is not None:
        step = timedelta(seconds=cadence.interval_seconds)
        steps = -(-(start - cadence.anchor) // step)
        slot = cadence.anchor + steps * step
        while True:
            yield slot
            slot += step
    assert cadence.cron is not None
    tz = _zone(cadence.zone)
    offset = min(_offset(start + shift, tz) for shift in (-_HORIZON, timedelta(), _HORIZON))
    walls = _wall_times(cadence.cron, (start + offset).replace(tzinfo=None))
    instants = _elapsed(walls, tz) if cadence.by_elapsed_time else _wall_clock(walls, tz)
    for slot in instants:
        if slot >= start:
            yield slot


def _wall_times(expression: str, begin: datetime) -> Iterator[datetime]:
    """The naive wall-clock times the expression matches, from ``begin`` on (inclusive)."""
    times = croniter(expression, begin - _SECOND, ret_type=datetime)
    while True:
        try:
            wall: datetime = times.get_next(datetime)
        except CroniterBadDateError:
            return
        yield wall


def _wall_clock(walls: Iterator[datetime], tz: ZoneInfo) -> Iterator[datetime]:
    """Fixed-hour expressions: a repeated time fires at its first occurrence, a skipped one at the
    end of the gap, and times that land on one instant fire there once."""
    last: datetime | None = None
    for wall in walls:
        instants = _occurrences(wall, tz)
        instant = instants[0] if instants else _gap_end(wall, tz)
        if instant != last:
            yield instant
            last = instant


def _elapsed(walls: Iterator[datetime], tz: ZoneInfo) -> Iterator[datetime]:
    """Wildcard-hour expressions: every instant whose wall-clock time matches. A repeated time's
    second occurrence comes after every first occurrence of the fold, so it waits for them."""
    second_pass: list[datetime] = []
    for wall in walls:
        instants = _occurrences(wall, tz)
        if len(instants) == 2:
            yield instants[0]
            second_pass.append(instants[1])
            continue
        yield from second_pass
        second_pass.clear()
        yield from instants
    yield from second_pass


def _occurrences(wall: datetime, tz: ZoneInfo) -> tuple[datetime, ...]:
    """The UTC instants at which ``wall`` is the time in ``tz``: none (a gap), one, or two (a
    fold), earliest first."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return (first,)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return (first, second)
    return ()


def _gap_end(wall: datetime, tz: ZoneInfo) -> datetime:
    """The first instant after the gap that swallowed ``wall``: where the clock jumps past it."""
    before = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    after = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    while after - before > _SECOND:
        middle = before + (after - before) // _SECOND // 2 * _SECOND
        if middle.astimezone(tz).replace(tzinfo=None) > wall:
            after = middle
        else:
            before = middle
    return after


def _offset(instant: datetime, tz: ZoneInfo) -> timedelta:
    offset = instant.astimezone(tz).utcoffset()
    assert offset is not None
    return offset


def _zone(name: str) -> ZoneInfo:
    """Only names of the IANA database: a path, or ``localtime``, would make a schedule mean
    whatever the machine running the leader says."""
    if name not in _zone_names():
        raise InvalidCadence(
            "zone",
            f"{name!r} is not an IANA time zone",
            hint="Name a zone of the IANA database, e.g. 'Europe/Berlin', 'America/New_York'"
            " or 'UTC'.",
        )
    return ZoneInfo(name)


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) - {"localtime"}  # a system file, where present


def _check_cron(expression: str) -> None:
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidCadence(
            "cron",
            f"{expression!r} has {len(fields)} fields, not 5",
            hint="Give minute hour day-of-month month day-of-week, e.g. '30 2 * * *'.",
        )
    try:
        croniter(expression, EPOCH.replace(tzinfo=None)).get_next(datetime)
    except CroniterBadDateError as error:
        raise InvalidCadence(
            "cron",
            f"{expression!r} matches no date",
            hint="Check the day-of-month against the month (e.g. 30 February never comes).",
        ) from error
    except CroniterError as error:
        raise InvalidCadence(
            "cron",
            f"{expression!r} is not a cron expression: {error}",
            hint="Give minute hour day-of-month month day-of-week, e.g. '30 2 * * *'.",
        ) from error


def _require_aware(instant: datetime, name: str) -> None:
    if instant.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {instant.isoformat()}")
