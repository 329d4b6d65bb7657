"""Pacing at promotion: a job promoted later than its rate limits tolerate takes its slots
again, as of now, rather than starting with every other job that came due meanwhile.

A waiting job's slot was booked at submission; the bucket then counts its tokens as spent at
that slot. A promoter late by up to a limit's tolerance (``RateLimit.tolerance_seconds``)
admits within the burst; one that stalls longer (a frozen or failed-over leader) would admit
everything that came due during the stall at once, on top of the new submissions the bucket
lets through as refilled. So the promoter hands each page of due jobs to ``pace`` first: a job
later than the smallest tolerance of the limits that apply to it (and than the leader's watch
floor, ``WATCH_FLOOR_SECONDS``, which a limit of small burst is already late by) books those
buckets again,
the page in slot order (``limits.admission.admit``, one statement), and is promoted only if
its new slot is now; otherwise it stays ``pending`` with ``not_before`` at the new slot. The
first booking is lost, which only ever admits less. Nothing is paced while no limit exists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import Connection

from jobengine.domain.job import NewJob
from jobengine.limits.admission import SUBMITTED, WATCH_FLOOR_SECONDS, admit
from jobengine.limits.cache import limits_of
from jobengine.store import limits_queries as q
from jobengine.store.database import run_all


def pace(conn: Connection, job_ids: Sequence[int]) -> list[int]:
    """Of the due pending ``job_ids``, those to promote now, in the caller's transaction,
    which must be the one that promotes them; the others are given their new slots."""
    limits = limits_of(conn)
    if not limits or not job_ids:
        return list(job_ids)
    rows = run_all(conn, q.PENDING_TO_PACE, {"ids": list(job_ids)})
    late: list[tuple[int, NewJob]] = []
    for row in rows:
        new = NewJob(
            type=row["type"], payload=row["payload"], tenant_id=row["tenant_id"], project_id="-"
        )
        tolerances = [lim.tolerance_seconds for lim in limits if lim.applies_to_type(new.type)]
        late_seconds = row["late_seconds"]
        if (
            tolerances
            and late_seconds is not None
            and late_seconds > max(min(tolerances), WATCH_FLOOR_SECONDS)
        ):
            late.append((row["id"], new))
    if not late:
        return list(job_ids)
    admitted = admit(conn, [new for _, new in late], limits, lease=False)
    if admitted.births is None:
        return list(job_ids)
    waiting = {
        job_id: new.not_before
        for (job_id, _), new, (why, _) in zip(late, admitted.jobs, admitted.births, strict=True)
        if why != SUBMITTED
    }
    slots = [{"id": job_id, "slot": slot.isoformat()} for job_id, slot in waiting.items() if slot]
    run_all(conn, q.RESLOT_PENDING, {"slots": json.dumps(slots)})
    return [job_id for job_id in job_ids if job_id not in waiting]
