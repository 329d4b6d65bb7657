"""The leader's reads, paged by id, and the one write it makes beside ``status``.

Pages go by id (keyset) rather than by expiry or age, so a row that cannot be processed and
is set aside does not come back at the head of every page and starve the rows behind it.
"""

from __future__ import annotations

from sqlalchemy import Connection

from jobengine.domain.status import JobStatus
from jobengine.store.jobs_repository import ExpiredLease

EXPIRED_LEASES_AFTER = """
-- name: expired_leases_after  (ix_jobs_lease_expiry)
-- Rescue is driven by missed heartbeats only: a long job whose heartbeats arrive is never here.
SELECT id, type, status, lease_token, lease_owner, attempt, budget_start_attempt, retry_policy
FROM jobs
WHERE status IN ('claimed', 'running') AND lease_expires_at < now() AND id > %(after)s
ORDER BY id
LIMIT %(limit)s
"""

DUE_PENDING_AFTER = """
-- name: due_pending_after  (ix_jobs_pending_not_before)
-- A run's child is due only once it waits for no parent: its last parent's transaction
-- released or cancelled it when it could, and left it here only for its not_before.
SELECT id FROM jobs
WHERE status = 'pending' AND not_before IS NOT NULL AND not_before <= now() AND id > %(after)s
  AND parents_waiting = 0
ORDER BY id
LIMIT %(limit)s
"""

PUBLISHED_UNCLAIMED_AFTER = """
-- name: published_unclaimed_after  (ix_jobs_scheduled_dispatched_at)
-- Jobs whose message should be waiting in the broker.
SELECT id FROM jobs
WHERE status = 'scheduled' AND dispatched_at IS NOT NULL AND id > %(after)s
ORDER BY id
LIMIT %(limit)s
"""

FORGET_DISPATCHES = """
-- name: forget_dispatches  (primary key)
-- The broker lost its messages: these jobs have none any more, so the dispatcher publishes
-- them (when due) and a limited queue counts them as waiting, not as published.
UPDATE jobs SET dispatched_at = NULL
WHERE id = ANY(%(ids)s::bigint[]) AND status = 'scheduled' AND dispatched_at IS NOT NULL
"""


class MaintenanceRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def expired_leases(self, after_id: int, limit: int) -> list[ExpiredLease]:
        rows = self._conn.exec_driver_sql(
            EXPIRED_LEASES_AFTER, {"after": after_id, "limit": limit}
        ).mappings()
        return [
            ExpiredLease(
                id=r["id"],
                type=r["type"],
                status=JobStatus(r["status"]),
                lease_token=r["lease_token"],
                lease_owner=r["lease_owner"],
                attempt=r["attempt"],
                budget_start_attempt=r["budget_start_attempt"],
                retry_policy=r["retry_policy"],
            )
            for r in rows
        ]

    def due_pending(self, after_id: int, limit: int) -> list[int]:
        rows = self._conn.exec_driver_sql(DUE_PENDING_AFTER, {"after": after_id, "limit": limit})
        return [r[0] for r in rows]

    def published_unclaimed(self, after_id: int, limit: int) -> list[int]:
        rows = self._conn.exec_driver_sql(
            PUBLISHED_UNCLAIMED_AFTER, {"after": after_id, "limit": limit}
        )
        return [r[0] for r in rows]

    def forget_dispatches(self, ids: list[int]) -> int:
        if not ids:
            return 0
        return self._conn.exec_driver_sql(FORGET_DISPATCHES, {"ids": ids}).rowcount
