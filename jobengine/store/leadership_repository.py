"""The ``leadership`` table: an elected role held as a lease row, timed by the database clock.

Every statement here uses Postgres's ``now()``, never the caller's clock, so reapers on hosts
whose clocks disagree still agree on when a lease ran out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

ACQUIRE = """
-- name: acquire_leadership  (pk_leadership)
-- Take the role if it is free or expired, or renew it if it is ours; a new holder starts a
-- new term, so whoever held it before can tell from the row that it was replaced.
INSERT INTO leadership AS l (role, holder, term, acquired_at, renewed_at, expires_at)
VALUES (%(role)s, %(holder)s, 1, now(), now(), now() + make_interval(secs => %(ttl)s))
ON CONFLICT (role) DO UPDATE SET
    holder = EXCLUDED.holder,
    term = CASE WHEN l.holder = EXCLUDED.holder THEN l.term ELSE l.term + 1 END,
    acquired_at = CASE WHEN l.holder = EXCLUDED.holder THEN l.acquired_at ELSE now() END,
    renewed_at = now(),
    expires_at = EXCLUDED.expires_at
WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
RETURNING term, expires_at
"""

FENCE = """
-- name: fence_leadership  (pk_leadership)
-- Inside a maintenance transaction: the lease is still ours and live, and stays ours until the
-- transaction ends (the share lock holds off a takeover), so no write lands after a takeover.
SELECT 1 FROM leadership
WHERE role = %(role)s AND holder = %(holder)s AND term = %(term)s AND expires_at > now()
FOR SHARE
"""

RELEASE = """
-- name: release_leadership  (pk_leadership)
UPDATE leadership SET expires_at = now()
WHERE role = %(role)s AND holder = %(holder)s AND term = %(term)s
"""

CURRENT = """
-- name: current_leadership  (pk_leadership)
SELECT role, holder, term, acquired_at, renewed_at, expires_at, expires_at > now() AS live
FROM leadership WHERE role = %(role)s
"""


@dataclass(frozen=True, slots=True)
class Won:
    term: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Leader:
    role: str
    holder: str
    term: int
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    live: bool


class LeadershipRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def acquire(self, role: str, holder: str, ttl_seconds: float) -> Won | None:
        """The term won or renewed; None while another holder's lease is live."""
        row = self._conn.exec_driver_sql(
            ACQUIRE, {"role": role, "holder": holder, "ttl": ttl_seconds}
        ).first()
        return None if row is None else Won(term=int(row[0]), expires_at=row[1])

    def fence(self, role: str, holder: str, term: int) -> bool:
        params = {"role": role, "holder": holder, "term": term}
        return self._conn.exec_driver_sql(FENCE, params).first() is not None

    def release(self, role: str, holder: str, term: int) -> bool:
        params = {"role": role, "holder": holder, "term": term}
        return self._conn.exec_driver_sql(RELEASE, params).rowcount > 0

    def current(self, role: str) -> Leader | None:
        row = self._conn.exec_driver_sql(CURRENT, {"role": role}).mappings().first()
        return None if row is None else Leader(**row)
