"""A submission's quota check: under the tenant's row lock, before anything is written.

Why a locked count and not a counter row kept by every transition: a counter would be
updated by each claim and each completion of the tenant's jobs, one hot row that every worker
waits on, paid by every tenant, quota or not. The count is paid only by submissions of a
tenant with a quota: two ranges of ``ix_jobs_tenant_status_id`` (measured in the README), and
the row lock makes concurrent submissions of one tenant take turns, so none over-admits. A
transactional ``enqueue`` holds the lock until its caller commits.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from sqlalchemy import Connection

from jobengine.domain.job import NewJob
from jobengine.quotas.book import book
from jobengine.quotas.errors import RETRY_AFTER_SECONDS, QuotaExceeded
from jobengine.store import quotas_queries as q
from jobengine.store.database import run_all


def check_quotas(conn: Connection, jobs: Sequence[NewJob]) -> None:
    """Raise ``QuotaExceeded`` if ``jobs`` would take a tenant past its ``max_queued``.

    Every job counts as new, a replayed idempotency key too: the check errs on refusing.
    The lock is held by the caller's transaction, so the jobs it then writes are counted by
    the next submission of the same tenant.
    """
    current = book(conn)
    adding = Counter(new.tenant_id for new in jobs if current.queued_limited(new.tenant_id))
    if not adding:
        return
    tenants = sorted(adding)
    limits = {
        r["tenant_id"]: r["max_queued"]
        for r in run_all(conn, q.LOCK_QUEUED_QUOTAS, {"tenants": tenants})
    }
    if not limits:
        return
    counts = run_all(conn, q.QUEUED_OF_TENANTS, {"tenants": sorted(limits)})
    for row in counts:
        tenant, queued = row["tenant_id"], row["queued"]
        if queued + adding[tenant] > limits[tenant]:
            excess = queued + adding[tenant] - limits[tenant]
            raise QuotaExceeded(
                tenant,
                limits[tenant],
                queued,
                adding[tenant],
                retry_after_seconds=retry_after(conn, tenant, excess),
            )


MAX_RETRY_AFTER_SECONDS = 300
"""A refused producer is never told to wait longer: its tenant's jobs may speed up."""


def retry_after(conn: Connection, tenant_id: str, excess: int) -> int:
    """Whole seconds until ``excess`` of the tenant's queued jobs have likely started: that
    many jobs' time, at the tenant's recent time per job, shared by the jobs it runs at once
    (at least one). ``RETRY_AFTER_SECONDS`` when it has completed nothing to go by; within
    1..``MAX_RETRY_AFTER_SECONDS``."""
    [drain] = run_all(conn, q.DRAIN_OF_TENANT, {"tenant_id": tenant_id})
    seconds_per_job = drain["seconds_per_job"]
    if seconds_per_job is None:
        return RETRY_AFTER_SECONDS
    wait = excess * float(seconds_per_job) / max(int(drain["running"]), 1)
    return max(1, min(MAX_RETRY_AFTER_SECONDS, math.ceil(wait)))


def held_back(conn: Connection, jobs: Sequence[NewJob]) -> list[bool]:
    """For each job, whether the leader publishes it rather than its producer."""
    current = book(conn)
    if not current.fair and not current.any_cap:
        return [False] * len(jobs)
    return [current.held_back(new.tenant_id, new.queue) for new in jobs]
