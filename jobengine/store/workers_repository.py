"""The workers registry's SQL: what each worker announces, and what readers make of it.

A worker writes only its own row (announce, heartbeat, leave); whether a row is live or gone is
decided by the reader's TTL against Postgres's clock, so workers with skewed clocks still agree.
None of this runs per job: a worker beats every few seconds, operators and scrapes read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Connection

from jobengine.store.database import run_all

UPSERT_WORKER = """
-- name: upsert_worker  (pk_workers)
INSERT INTO workers (name, host, pid, queues, types, concurrency, sealed, draining, version,
                     started_at, last_seen_at)
VALUES (%(name)s, %(host)s, %(pid)s, %(queues)s, %(types)s, %(concurrency)s, %(sealed)s,
        %(draining)s, %(version)s, %(started_at)s, now())
ON CONFLICT (name) DO UPDATE SET
    host = EXCLUDED.host, pid = EXCLUDED.pid, queues = EXCLUDED.queues, types = EXCLUDED.types,
    concurrency = EXCLUDED.concurrency, sealed = EXCLUDED.sealed, draining = EXCLUDED.draining,
    version = EXCLUDED.version, started_at = EXCLUDED.started_at, last_seen_at = now()
"""

HEARTBEAT_WORKER = """
-- name: heartbeat_worker  (pk_workers)
-- Zero rows means the row is gone (pruned, or never written while Postgres was away).
UPDATE workers SET last_seen_at = now(), draining = draining OR %(draining)s
WHERE name = %(name)s AND pid = %(pid)s AND host = %(host)s
RETURNING name
"""

DELETE_WORKER = """
-- name: delete_worker  (pk_workers)
-- Only this process's row: a restarted worker of the same name may have taken it already.
DELETE FROM workers WHERE name = %(name)s AND pid = %(pid)s AND host = %(host)s
"""

PRUNE_WORKERS = """
-- name: prune_workers  (ix_workers_last_seen_at)
DELETE FROM workers WHERE last_seen_at < now() - make_interval(secs => %(older_than)s)
"""

LIST_WORKERS = """
-- name: list_workers  (ix_workers_last_seen_at)
SELECT name, host, pid, queues, types, concurrency, sealed, draining, version, started_at,
       last_seen_at,
       last_seen_at < now() - make_interval(secs => %(ttl)s) AS gone,
       extract(epoch FROM now() - last_seen_at)::float8 AS seen_seconds_ago
FROM workers
WHERE %(include_gone)s OR last_seen_at >= now() - make_interval(secs => %(ttl)s)
ORDER BY name
"""

TYPES_WITHOUT_WORKER = """
-- name: types_without_worker  (ix_workers_last_seen_at; scans due scheduled jobs, not per job)
-- A type is handled while a live worker that is not draining lists it. The wait of a job is
-- counted from when it became due: scheduled_at, or not_before when that came later.
WITH handled AS (
    SELECT DISTINCT unnest(types) AS type FROM workers
    WHERE last_seen_at >= now() - make_interval(secs => %(ttl)s) AND NOT draining
)
SELECT j.type, count(*) AS waiting,
       extract(epoch FROM now() - min(greatest(j.scheduled_at, j.not_before)))::float8
           AS oldest_seconds
FROM jobs j
WHERE j.status = 'scheduled'
  AND (j.not_before IS NULL OR j.not_before <= now())
  AND NOT EXISTS (SELECT 1 FROM handled h WHERE h.type = j.type)
GROUP BY j.type
ORDER BY j.type
"""


WorkerState = Literal["live", "draining", "gone"]


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """What a worker announces about itself."""

    name: str
    """Celery's node name (``-n``), e.g. ``gpu-1@host``."""
    host: str
    pid: int
    queues: Sequence[str]
    types: Sequence[str]
    concurrency: int | None
    sealed: bool
    version: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class WorkerView:
    """A worker as a reader sees it: gone once not seen for the reader's TTL."""

    name: str
    host: str
    pid: int
    queues: list[str]
    types: list[str]
    concurrency: int | None
    sealed: bool
    draining: bool
    version: str | None
    started_at: datetime
    last_seen_at: datetime
    gone: bool
    seen_seconds_ago: float

    @property
    def state(self) -> WorkerState:
        """``live``, ``draining`` (finishing its tasks, taking no new ones) or ``gone``."""
        if self.gone:
            return "gone"
        return "draining" if self.draining else "live"


@dataclass(frozen=True, slots=True)
class TypeWithoutWorker:
    """Due jobs of a type that no live worker handles: they wait in its broker queue."""

    type: str
    waiting: int
    oldest_waiting_seconds: float

    @property
    def message(self) -> str:
        return (
            f"no live worker handles type {self.type!r}: {self.waiting} job(s) waiting, "
            f"the oldest for {self.oldest_waiting_seconds:.0f}s"
        )


class WorkersRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def announce(self, worker: WorkerRecord, *, draining: bool = False) -> None:
        run_all(
            self._conn,
            UPSERT_WORKER,
            {
                "name": worker.name,
                "host": worker.host,
                "pid": worker.pid,
                "queues": list(worker.queues),
                "types": list(worker.types),
                "concurrency": worker.concurrency,
                "sealed": worker.sealed,
                "draining": draining,
                "version": worker.version,
                "started_at": worker.started_at,
            },
        )

    def heartbeat(self, worker: WorkerRecord, *, draining: bool = False) -> bool:
        """Refresh ``last_seen_at``; False when the row is missing and must be announced."""
        rows = run_all(self._conn, HEARTBEAT_WORKER, {**_identity(worker), "draining": draining})
        return bool(rows)

    def leave(self, worker: WorkerRecord) -> None:
        run_all(self._conn, DELETE_WORKER, _identity(worker))

    def prune(self, older_than_seconds: float) -> int:
        cur = self._conn.exec_driver_sql(PRUNE_WORKERS, {"older_than": older_than_seconds})
        return cur.rowcount

    def workers(self, *, ttl_seconds: float, include_gone: bool = False) -> list[WorkerView]:
        rows = run_all(self._conn, LIST_WORKERS, {"ttl": ttl_seconds, "include_gone": include_gone})
        return [WorkerView(**r) for r in rows]

    def types_without_worker(self, *, ttl_seconds: float) -> list[TypeWithoutWorker]:
        rows = run_all(self._conn, TYPES_WITHOUT_WORKER, {"ttl": ttl_seconds})
        return [
            TypeWithoutWorker(
                type=r["type"], waiting=r["waiting"], oldest_waiting_seconds=r["oldest_seconds"]
            )
            for r in rows
        ]


def _identity(worker: WorkerRecord) -> dict[str, object]:
    return {"name": worker.name, "pid": worker.pid, "host": worker.host}
