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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from jobengine.domain.job import NewJob
from jobengine.limits.cache import cache_of, limits_of
from jobengine.limits.definition import RateLimit
from jobengine.limits.leases import Drawn, leases_of
from jobengine.store import limits_queries as q
from jobengine.store.database import run_all

SUBMITTED = "submitted"


def rate_limited_reason(limit: str, key: str) -> str:
    return f"rate_limited: {limit} key {key}"


def _applying(limits: Sequence[RateLimit], jobs: Sequence[NewJob]) -> dict[str, list[RateLimit]]:
    """The limits that apply to each job type of ``jobs``: looked up once per type."""
    return {
        t: [limit for limit in limits if limit.applies_to_type(t)] for t in {j.type for j in jobs}
    }


def slots_wanted(
    conn: Connection, jobs: Sequence[NewJob], limits: Sequence[RateLimit] | None = None
) -> list[dict[str, Any]]:
    """One row per job (by ordinal) and limit that applies to it; none, and no statement,
    when no limit applies. A job with an idempotency key goes alone, through
    ``CREATE_JOB_LIMITED_KEYED``, which takes no slot for a key already used. ``limits`` defaults
    to this process's cached copy."""
    limits = limits_of(conn) if limits is None else limits
    if not limits:
        return []
    applying = _applying(limits, jobs)
    return [
        {
            "ord": ord_,
            "limit_name": limit.name,
            "key": limit.key_of(new),
            "units": limit.units_of(new),
        }
        for ord_, new in enumerate(jobs)
        for limit in applying[new.type]
    ]


def lease_for(conn: Connection, slots: Sequence[Mapping[str, Any]]) -> Drawn | None:
    """Tokens for one job's ``slots`` (``slots_wanted``) from this process's leases, if every
    bucket can give them (``leases``): the job is then written with ``CREATE_JOB_LEASED``."""
    needs: dict[tuple[str, str], int] = {}
    for row in slots:
        bucket = (row["limit_name"], row["key"])
        needs[bucket] = needs.get(bucket, 0) + row["units"]
    return leases_of(conn).draw(conn, needs, cache_of(conn).by_name(conn))


@dataclass(frozen=True, slots=True)
class Admission:
    """How a batch is to be written: its ``jobs`` (with a slot as ``not_before`` where one
    waits), each one's birth reason and details when some job waits (else None: every birth
    is a plain one), and the leases its tokens were drawn from (None: booked)."""

    jobs: Sequence[NewJob]
    births: list[tuple[str, dict[str, Any]]] | None = None
    lease: Drawn | None = None


def admit(
    conn: Connection,
    jobs: Sequence[NewJob],
    limits: Sequence[RateLimit] | None = None,
    *,
    lease: bool = True,
) -> Admission:
    """How each of a batch's ``jobs`` is to be born, in order: from this process's leases
    when they can give every bucket its units (and ``lease``), else one statement for the
    whole batch (one row per bucket); none when no limit applies. Each job's slot follows
    from its bucket's answer and the units of the jobs before it in the batch."""
    limits = limits_of(conn) if limits is None else limits
    if not limits or not jobs:
        return Admission(jobs)
    applying = _applying(limits, jobs)
    by_bucket: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for ord_, new in enumerate(jobs):
        for limit in applying[new.type]:
            by_bucket.setdefault((limit.name, limit.key_of(new)), []).append(
                (ord_, limit.units_of(new))
            )
    if not by_bucket:
        return Admission(jobs)
    needs = {bucket: sum(units for _, units in drawn) for bucket, drawn in by_bucket.items()}
    if lease:
        drawn = leases_of(conn).draw(conn, needs, {limit.name: limit for limit in limits})
        if drawn is not None:
            return Admission(jobs, lease=drawn)
    totals = [
        {"limit_name": name, "key": key, "units": units} for (name, key), units in needs.items()
    ]
    buckets = run_all(conn, q.BOOK_BUCKETS, {"wanted": json.dumps(totals, separators=(",", ":"))})
    latest: dict[int, tuple[str, str, datetime]] = {}
    for bucket in buckets:
        now: datetime = bucket["now"]
        # Seconds past now at which each job's last token is refilled, beyond the capacity.
        beyond = (bucket["booked_from"] - now).total_seconds() - bucket["capacity"]
        name, key = bucket["limit_name"], bucket["key"]
        if beyond + needs[(name, key)] * bucket["per_token"] <= 0:
            continue  # the whole batch fits: no job of it waits for this bucket
        for ord_, units in by_bucket[(name, key)]:
            beyond += units * bucket["per_token"]
            if beyond > 0:
                slot = now + timedelta(seconds=beyond)
                held = latest.get(ord_)
                if held is None or slot > held[2]:
                    latest[ord_] = (name, key, slot)
    if not latest:
        return Admission(jobs)
    placed = list(jobs)
    births: list[tuple[str, dict[str, Any]]] = [(SUBMITTED, {})] * len(jobs)
    for ord_, (limit_name, key, slot) in latest.items():
        new = jobs[ord_]
        not_before = slot if new.not_before is None else max(slot, new.not_before)
        placed[ord_] = replace(new, not_before=not_before)
        births[ord_] = (
            rate_limited_reason(limit_name, key),
            {"rate_limit": limit_name, "key": key, "slot": slot.isoformat()},
        )
    return Admission(placed, births)


WATCH_FLOOR_SECONDS = 0.25
"""The leader wakes at most this often for the limits' sake: a limit whose tolerance is
shorter (a burst of one) sees admissions up to this late, never early."""


def watch_seconds(conn: Connection) -> float | None:
    """How soon the leader's promoter must look again for jobs a rate limit holds, though
    none is pending yet: the shortest tolerance of any limit (None without limits)."""
    tolerances = [limit.tolerance_seconds for limit in limits_of(conn)]
    return max(min(tolerances), WATCH_FLOOR_SECONDS) if tolerances else None
