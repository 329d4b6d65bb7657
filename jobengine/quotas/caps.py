"""A claim under its tenants' caps: at most ``max_running`` of a tenant's jobs claimed or
running at once, fleet-wide.

As with a queue's limit (``Executor._claim_within_limit``), claims of a capped tenant take
turns on its row: locked, then counted by a new statement, which therefore sees every claim
committed before; so four worker processes racing for the last slot admit one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from jobengine.store import quotas_queries as q
from jobengine.store.database import run_all


@dataclass(frozen=True, slots=True)
class Deferred:
    """Jobs a cap kept back from a claim, and why."""

    job_ids: list[int]
    tenant_id: str
    max_running: int
    running: int


def within_caps(conn: Connection, job_ids: list[int]) -> tuple[list[int], list[Deferred]]:
    """The jobs of ``job_ids`` (in order) that the caps let this claim take, and those they
    keep back, by tenant. The cap rows stay locked until the caller's transaction ends, which
    must be the one that claims."""
    locked = run_all(conn, q.LOCK_TENANT_CAPS, {"ids": job_ids})
    caps = {r["tenant_id"]: r["max_running"] for r in locked}
    if not caps:
        return job_ids, []
    rows = run_all(conn, q.LEASED_OF_JOBS_TENANTS, {"ids": job_ids, "capped": sorted(caps)})
    tenant_of = {r["id"]: r["tenant_id"] for r in rows}
    leased = {r["tenant_id"]: r["leased"] for r in rows if r["leased"] is not None}
    free = {tenant: caps[tenant] - leased.get(tenant, 0) for tenant in caps}
    take: list[int] = []
    kept: dict[str, list[int]] = {}
    for job_id in job_ids:
        tenant = tenant_of.get(job_id)
        if tenant is None or tenant not in caps:
            take.append(job_id)
        elif free[tenant] > 0:
            free[tenant] -= 1
            take.append(job_id)
        else:
            kept.setdefault(tenant, []).append(job_id)
    deferred = [
        Deferred(ids, tenant, caps[tenant], leased.get(tenant, 0)) for tenant, ids in kept.items()
    ]
    return take, deferred


def capped_tenants(conn: Connection) -> set[str]:
    """Tenants with a cap, for a claimer's cached set (re-read as its queue limits are)."""
    return {r["tenant_id"] for r in run_all(conn, q.ALL_QUOTAS, {}) if r["max_running"] is not None}
