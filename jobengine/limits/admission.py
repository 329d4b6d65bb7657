"""Taking a submission's slots: the job is born ``scheduled`` when its slot is now, else
``pending`` with ``not_before`` at its slot and a birth row saying which limit holds it.

The slots are taken in the submitting transaction: a single job's in its insert statement
(``store.limits_queries.CREATE_JOB_LIMITED``), a batch's in one statement for the whole batch
(``BOOK_BUCKETS``), so a refused or rolled-back submission books nothing it keeps and a
stored job always has its slot. The leader's promoter moves a due ``pending``
job to ``scheduled``; it can be late, never early, so admissions never run ahead of a bucket.
A job never ran while it waits: its attempts and retry budget are untouched. A job given its
own ``not_before`` takes its slot as of its submission and waits for the later of the two.
Several limits on one job: every bucket is advanced and the latest slot holds it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from jobengine.domain.job import NewJob
from jobengine.limits.cache import limits_of
from jobengine.limits.definition import RateLimit
from jobengine.store import limits_queries as q
from jobengine.store.database import run_all

SUBMITTED = "submitted"


@dataclass(frozen=True, slots=True)
class Birth:
    """A job as it is to be stored: ``new`` (with the slot as ``not_before`` when it waits)
    and its birth row's reason and details."""

    new: NewJob
    reason: str = SUBMITTED
    details: dict[str, Any] = field(default_factory=dict)


def rate_limited_reason(limit: str, key: str) -> str:
    return f"rate_limited: {limit} key {key}"


def slots_wanted(
    conn: Connection, jobs: Sequence[NewJob], limits: Sequence[RateLimit] | None = None
) -> list[dict[str, Any]]:
    """One row per job (by ordinal) and limit that applies to it; none, and no statement,
    when no limit applies. A job with an idempotency key goes alone, through
    ``CREATE_JOB_LIMITED_KEYED``, which takes no slot for a key already used. ``limits`` defaults
    to this process's cached copy."""
    limits = limits_of(conn) if limits is None else limits
    wanted: list[dict[str, Any]] = []
    if not limits:
        return wanted
    for ord_, new in enumerate(jobs):
        applying = [limit for limit in limits if limit.applies_to(new)]
        if not applying:
            continue
        wanted.extend(
            {
                "ord": ord_,
                "limit_name": limit.name,
                "key": limit.key_of(new),
                "units": limit.units_of(new),
            }
            for limit in applying
        )
    return wanted


def admit(
    conn: Connection, jobs: Sequence[NewJob], limits: Sequence[RateLimit] | None = None
) -> list[Birth]:
    """How each of a batch's ``jobs`` is to be born, in order: one statement for the whole
    batch when any limit applies (one row per bucket), none when no limit does. Each job's
    slot follows from its bucket's answer and the units of the jobs before it in the batch."""
    births = [Birth(new) for new in jobs]
    by_bucket: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for row in slots_wanted(conn, jobs, limits):
        by_bucket.setdefault((row["limit_name"], row["key"]), []).append((row["ord"], row["units"]))
    if not by_bucket:
        return births
    totals = [
        {"limit_name": name, "key": key, "units": sum(units for _, units in drawn)}
        for (name, key), drawn in by_bucket.items()
    ]
    buckets = run_all(conn, q.BOOK_BUCKETS, {"wanted": json.dumps(totals, separators=(",", ":"))})
    latest: dict[int, tuple[str, str, datetime]] = {}
    for bucket in buckets:
        now: datetime = bucket["now"]
        # Seconds past now at which each job's last token is refilled, beyond the capacity.
        beyond = (bucket["booked_from"] - now).total_seconds() - bucket["capacity"]
        for ord_, units in by_bucket[(bucket["limit_name"], bucket["key"])]:
            beyond += units * bucket["per_token"]
            if beyond > 0:
                slot = now + timedelta(seconds=beyond)
                held = latest.get(ord_)
                if held is None or slot > held[2]:
                    latest[ord_] = (bucket["limit_name"], bucket["key"], slot)
    for ord_, (limit_name, key, slot) in latest.items():
        new = jobs[ord_]
        not_before = slot if new.not_before is None else max(slot, new.not_before)
        births[ord_] = Birth(
            replace(new, not_before=not_before),
            rate_limited_reason(limit_name, key),
            {"rate_limit": limit_name, "key": key, "slot": slot.isoformat()},
        )
    return births


WATCH_FLOOR_SECONDS = 0.25
"""The leader wakes at most this often for the limits' sake: a limit whose tolerance is
shorter (a burst of one) sees admissions up to this late, never early."""


def watch_seconds(conn: Connection) -> float | None:
    """How soon the leader's promoter must look again for jobs a rate limit holds, though
    none is pending yet: the shortest tolerance of any limit (None without limits)."""
    tolerances = [limit.tolerance_seconds for limit in limits_of(conn)]
    return max(min(tolerances), WATCH_FLOOR_SECONDS) if tolerances else None
