"""Slots of cron expressions and intervals, across daylight-saving changes (the rule is in
``jobengine/schedules/slots.py``'s docstring and the README's "Schedules" section)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobengine.schedules.errors import InvalidCadence
from jobengine.schedules.slots import Cadence, next_slot, slots_between


def cron(expression: str, zone: str = "UTC") -> Cadence:
    return Cadence.parse(cron=expression, interval_seconds=None, zone=zone)


def local_day(zone: str, day: date) -> tuple[datetime, datetime]:
    """The instants at which ``day`` begins and ends in ``zone`` (23, 24 or 25 hours apart)."""
    tz = ZoneInfo(zone)
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def local_times(cadence: Cadence, zone: str, day: date) -> list[str]:
    tz = ZoneInfo(zone)
    return [
        slot.astimezone(tz).isoformat() for slot in slots_between(cadence, *local_day(zone, day))
    ]


BERLIN_SPRING, BERLIN_FALL = date(2026, 3, 29), date(2026, 10, 25)
NEW_YORK_SPRING, NEW_YORK_FALL = date(2026, 3, 8), date(2026, 11, 1)


@pytest.mark.parametrize(
    ("zone", "day", "expression", "expected"),
    [
        ("Europe/Berlin", BERLIN_SPRING, "30 2 * * *", ["2026-03-29T03:00:00+02:00"]),
        ("Europe/Berlin", BERLIN_FALL, "30 2 * * *", ["2026-10-25T02:30:00+02:00"]),
        ("America/New_York", NEW_YORK_SPRING, "30 2 * * *", ["2026-03-08T03:00:00-04:00"]),
        ("America/New_York", NEW_YORK_FALL, "30 1 * * *", ["2026-11-01T01:30:00-04:00"]),
        ("America/New_York", NEW_YORK_FALL, "30 2 * * *", ["2026-11-01T02:30:00-05:00"]),
    ],
)
def test_a_daily_fixed_hour_job_fires_once_on_the_day_its_time_is_skipped_or_repeated(
    zone: str, day: date, expression: str, expected: list[str]
) -> None:
    assert local_times(cron(expression, zone), zone, day) == expected


@pytest.mark.parametrize(
    ("zone", "day", "quarter_hours", "half_past_each_hour"),
    [
        ("Europe/Berlin", BERLIN_SPRING, 92, 23),
        ("Europe/Berlin", BERLIN_FALL, 100, 25),
        ("America/New_York", NEW_YORK_SPRING, 92, 23),
        ("America/New_York", NEW_YORK_FALL, 100, 25),
        ("Europe/Berlin", date(2026, 6, 1), 96, 24),
    ],
)
def test_a_wildcard_hour_job_fires_by_elapsed_time_so_the_day_has_as_many_slots_as_hours(
    zone: str, day: date, quarter_hours: int, half_past_each_hour: int
) -> None:
    assert len(local_times(cron("*/15 * * * *", zone), zone, day)) == quarter_hours
    assert len(local_times(cron("30 * * * *", zone), zone, day)) == half_past_each_hour


def test_the_repeated_hour_of_a_wildcard_hour_job_fires_again_after_the_first_pass() -> None:
    times = local_times(cron("*/30 * * * *", "Europe/Berlin"), "Europe/Berlin", BERLIN_FALL)
    assert times[4:10] == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T03:30:00+01:00",
    ]


def test_several_slots_skipped_by_spring_forward_fire_once_at_the_end_of_the_gap() -> None:
    times = local_times(cron("0,20,40 2,3 * * *", "Europe/Berlin"), "Europe/Berlin", BERLIN_SPRING)
    assert times == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:20:00+02:00",
        "2026-03-29T03:40:00+02:00",
    ]


def test_a_fixed_hour_job_with_a_minute_wildcard_fires_in_the_first_pass_of_a_fold_only() -> None:
    times = local_times(cron("* 2 * * *", "Europe/Berlin"), "Europe/Berlin", BERLIN_FALL)
    assert len(times) == 60
    assert {time[-6:] for time in times} == {"+02:00"}


def test_a_range_starting_in_a_folds_first_pass_includes_the_second_pass_of_earlier_times() -> None:
    start = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, the first pass
    slots = list(
        slots_between(cron("*/15 * * * *", "Europe/Berlin"), start, start + timedelta(hours=1))
    )
    assert slots == [start + timedelta(minutes=15 * n) for n in range(4)]
    assert slots[2].astimezone(ZoneInfo("Europe/Berlin")).isoformat() == "2026-10-25T02:00:00+01:00"


def test_a_range_starting_at_the_end_of_a_gap_includes_the_slot_the_gap_skipped() -> None:
    gap_end = datetime(2026, 3, 29, 1, tzinfo=UTC)  # 03:00 CEST, just after 02:00-03:00
    daily = cron("30 2 * * *", "Europe/Berlin")
    assert next(slots_between(daily, gap_end, gap_end + timedelta(days=1))) == gap_end
    assert next_slot(daily, gap_end - timedelta(microseconds=1)) == gap_end
    assert next_slot(daily, gap_end) == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)


def test_next_slot_is_strictly_after_the_instant_given() -> None:
    hourly = cron("0 * * * *")
    on_the_hour = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert next_slot(hourly, on_the_hour) == datetime(2026, 5, 1, 13, tzinfo=UTC)
    assert next_slot(hourly, on_the_hour - timedelta(microseconds=1)) == on_the_hour


def test_slots_between_includes_its_start_and_excludes_its_end() -> None:
    start = datetime(2026, 5, 1, 12, tzinfo=UTC)
    slots = list(slots_between(cron("*/10 * * * *"), start, start + timedelta(hours=1)))
    assert slots[0] == start
    assert slots[-1] == start + timedelta(minutes=50)
    assert len(slots) == 6


def test_a_cron_expression_reads_its_day_fields_in_the_schedules_zone() -> None:
    mondays_at_nine = cron("0 9 * * 1", "Asia/Tokyo")
    after = datetime(2026, 5, 3, 0, 1, tzinfo=UTC)  # Sunday 09:01 in Tokyo
    assert next_slot(mondays_at_nine, after) == datetime(2026, 5, 4, 0, 0, tzinfo=UTC)


def test_an_interval_counts_from_the_epoch_so_an_hourly_interval_lands_on_the_hour() -> None:
    hourly = Cadence.parse(cron=None, interval_seconds=3600, zone="Europe/Berlin")
    assert next_slot(hourly, datetime(2026, 10, 25, 0, 10, tzinfo=UTC)) == datetime(
        2026, 10, 25, 1, tzinfo=UTC
    )
    start, end = local_day("Europe/Berlin", BERLIN_FALL)
    assert len(list(slots_between(hourly, start, end))) == 25


def test_an_interval_counts_from_its_anchor() -> None:
    anchor = datetime(2026, 1, 1, 0, 0, 7, tzinfo=ZoneInfo("Europe/Berlin"))
    every_90s = Cadence.parse(cron=None, interval_seconds=90, anchor=anchor)
    assert every_90s.anchor == datetime(2025, 12, 31, 23, 0, 7, tzinfo=UTC)
    later = datetime(2100, 1, 1, tzinfo=UTC)
    slots = list(islice(slots_between(every_90s, anchor - timedelta(minutes=3), later), 4))
    assert [slot - anchor for slot in slots] == [timedelta(seconds=s) for s in (-180, -90, 0, 90)]


def test_slots_are_produced_lazily_so_a_range_of_centuries_starts_at_once() -> None:
    every_minute = cron("* * * * *", "Europe/Berlin")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    slots = list(islice(slots_between(every_minute, start, start.replace(year=2400)), 100_000))
    assert len(slots) == 100_000
    assert slots[-1] == start + timedelta(minutes=99_999)
    assert all(earlier < later for earlier, later in pairwise(slots))


def test_an_expression_that_stops_matching_ends_its_slots() -> None:
    leap_days = cron("0 0 29 2 *")
    assert next_slot(leap_days, datetime(2026, 1, 1, tzinfo=UTC)) == datetime(
        2028, 2, 29, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"cron": "61 * * * *", "interval_seconds": None}, "cron"),
        ({"cron": "every day", "interval_seconds": None}, "cron"),
        ({"cron": "0 0 * * * *", "interval_seconds": None}, "cron"),
        ({"cron": "0 0 30 2 *", "interval_seconds": None}, "cron"),
        ({"cron": "0 2 * * *", "interval_seconds": None, "zone": "Mars/Olympus_Mons"}, "zone"),
        ({"cron": "0 2 * * *", "interval_seconds": None, "zone": "../../etc/passwd"}, "zone"),
        ({"cron": "0 2 * * *", "interval_seconds": None, "zone": "localtime"}, "zone"),
        ({"cron": None, "interval_seconds": 400 * 86_400}, "intervalSeconds"),
        ({"cron": "0 2 * * *", "interval_seconds": 60}, "cron"),
        ({"cron": None, "interval_seconds": None}, "cron"),
        ({"cron": None, "interval_seconds": 0}, "intervalSeconds"),
        ({"cron": None, "interval_seconds": 1.5}, "intervalSeconds"),
        ({"cron": None, "interval_seconds": 60, "anchor": datetime(2026, 1, 1)}, "anchor"),
    ],
)
def test_a_cadence_that_cannot_be_used_is_refused_naming_its_field(
    arguments: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidCadence) as refused:
        Cadence.parse(**arguments)  # type: ignore[arg-type]
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")
    assert refused.value.hint


ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"])
EXPRESSIONS = st.sampled_from(["*/15 * * * *", "30 2 * * *", "0,30 1-3 * * *", "45 */3 * * *"])
TRANSITIONS = [datetime(2026, month, day, tzinfo=UTC) for month, day in ((3, 8), (3, 29), (4, 5))]
TRANSITIONS += [
    datetime(2026, month, day, tzinfo=UTC) for month, day in ((10, 4), (10, 25), (11, 1))
]
INSTANTS = st.builds(
    lambda transition, seconds, micros: (
        transition + timedelta(seconds=seconds, microseconds=micros)
    ),
    st.sampled_from(TRANSITIONS),
    st.one_of(st.integers(-2 * 86_400, 86_400), st.integers(-96, 48).map(lambda n: n * 1800)),
    st.sampled_from([0, 0, 1, 999_999]),
)
"""Starts within two days of a daylight-saving change of one of the zones, often on a whole
half hour, where the changes themselves fall."""


@settings(max_examples=150, deadline=None)
@given(
    zone=ZONES,
    expression=EXPRESSIONS,
    start=INSTANTS,
    split=st.one_of(st.integers(0, 3 * 86_400), st.integers(0, 144).map(lambda n: n * 1800)),
)
def test_splitting_a_range_anywhere_yields_the_same_slots_and_next_slot_agrees(
    zone: str, expression: str, start: datetime, split: int
) -> None:
    cadence = cron(expression, zone)
    middle, end = start + timedelta(seconds=split), start + timedelta(days=3)
    whole = list(slots_between(cadence, start, end))
    assert whole == list(slots_between(cadence, start, middle)) + list(
        slots_between(cadence, middle, end)
    )
    assert all(earlier < later for earlier, later in pairwise(whole))
    for slot in whole:  # a range starting at a slot starts with it, a gap's end included
        assert next(slots_between(cadence, slot, end)) == slot
    if whole:
        assert next_slot(cadence, start - timedelta(microseconds=1)) == whole[0]
        following = (
            whole[1] if len(whole) > 1 else next_slot(cadence, end - timedelta(microseconds=1))
        )
        assert next_slot(cadence, whole[0]) == following
