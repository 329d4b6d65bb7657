"""Reading and writing quotas and fair-shared queues, and each process's cached copy of them.

The hot paths (every submission, every claim) ask the cached copy, re-read every
``REFRESH_SECONDS``, so a tenant or queue without a row costs them a dict lookup and a change
made elsewhere applies fleet-wide within seconds. A change made through this process forgets
the copy at once. The decision itself is always taken on the row, locked, never on the copy.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine

from jobengine.audit import Origin, record
from jobengine.errors import ValidationError
from jobengine.store import quotas_queries as q
from jobengine.store.database import run_all

REFRESH_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Quota:
    tenant_id: str
    max_queued: int | None = None
    max_running: int | None = None
    weight: int = 1
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    quota: Quota
    queued: int
    running: int
    waiting: int


@dataclass(frozen=True, slots=True)
class FairQueue:
    queue: str
    max_in_flight: int
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FairQueueUsage:
    fair: FairQueue
    waiting: int
    in_flight: int


class BadQuota(ValidationError):
    code = "BAD_QUOTA"


def _quota(row: dict[str, object]) -> Quota:
    return Quota(**{k: row[k] for k in Quota.__slots__})  # type: ignore[arg-type]


class QuotaRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def all(self) -> list[Quota]:
        return [_quota(r) for r in run_all(self._conn, q.ALL_QUOTAS, {})]

    def set(self, quota: Quota, *, origin: Origin | None = None) -> Quota:
        """``origin`` (here and below) files the act in the audit log, in this transaction."""
        if quota.max_queued is not None and quota.max_queued < 0:
            raise BadQuota(
                f"max_queued {quota.max_queued} is negative", hint="Give 0 or more, or none."
            )
        if quota.max_running is not None and quota.max_running < 1:
            raise BadQuota(
                f"max_running {quota.max_running} is not positive", hint="Give 1 or more, or none."
            )
        if quota.weight < 1:
            raise BadQuota(f"weight {quota.weight} is not positive", hint="Give 1 or more.")
        [row] = run_all(
            self._conn,
            q.SET_QUOTA,
            {
                "tenant_id": quota.tenant_id,
                "max_queued": quota.max_queued,
                "max_running": quota.max_running,
                "weight": quota.weight,
            },
        )
        forget()
        if origin is not None:
            detail = {
                "maxQueued": quota.max_queued,
                "maxRunning": quota.max_running,
                "weight": quota.weight,
            }
            record(
                self._conn,
                origin,
                "quota.set",
                object_id=quota.tenant_id,
                tenant=quota.tenant_id,
                detail=detail,
            )
        return _quota(row)

    def delete(self, tenant_id: str, *, origin: Origin | None = None) -> bool:
        gone = bool(run_all(self._conn, q.DELETE_QUOTA, {"tenant_id": tenant_id}))
        forget()
        if gone and origin is not None:
            record(self._conn, origin, "quota.delete", object_id=tenant_id, tenant=tenant_id)
        return gone

    def usage(self) -> list[QuotaUsage]:
        return [
            QuotaUsage(_quota(r), queued=r["queued"], running=r["running"], waiting=r["waiting"])
            for r in run_all(self._conn, q.TENANT_USAGE, {})
        ]

    def fair_queues(self) -> list[FairQueue]:
        return [FairQueue(**r) for r in run_all(self._conn, q.ALL_FAIR_QUEUES, {})]

    def set_fair_queue(
        self, queue: str, max_in_flight: int, *, origin: Origin | None = None
    ) -> FairQueue:
        if max_in_flight < 1:
            raise BadQuota(
                f"max_in_flight {max_in_flight} is not positive",
                hint="Give how many of the queue's messages may wait in the broker, 1 or more.",
            )
        [row] = run_all(
            self._conn, q.SET_FAIR_QUEUE, {"queue": queue, "max_in_flight": max_in_flight}
        )
        forget()
        if origin is not None:
            detail = {"maxInFlight": max_in_flight}
            record(self._conn, origin, "fair_queue.set", object_id=queue, detail=detail)
        return FairQueue(**row)

    def delete_fair_queue(self, queue: str, *, origin: Origin | None = None) -> bool:
        gone = bool(run_all(self._conn, q.DELETE_FAIR_QUEUE, {"queue": queue}))
        forget()
        if gone and origin is not None:
            record(self._conn, origin, "fair_queue.delete", object_id=queue)
        return gone

    def fair_usage(self) -> list[FairQueueUsage]:
        return [
            FairQueueUsage(
                FairQueue(r["queue"], r["max_in_flight"], r["updated_at"]),
                waiting=r["waiting"],
                in_flight=r["in_flight"],
            )
            for r in run_all(self._conn, q.FAIR_QUEUE_USAGE, {})
        ]


@dataclass(frozen=True, slots=True)
class Book:
    """What one database says, as of ``read_at``: which tenants have a quota or a cap, which
    queues are fair-shared."""

    quotas: dict[str, Quota]
    fair: dict[str, int]
    read_at: float

    def queued_limited(self, tenant_id: str) -> bool:
        quota = self.quotas.get(tenant_id)
        return quota is not None and quota.max_queued is not None

    def capped(self, tenant_id: str) -> bool:
        quota = self.quotas.get(tenant_id)
        return quota is not None and quota.max_running is not None

    @property
    def any_cap(self) -> bool:
        return any(quota.max_running is not None for quota in self.quotas.values())

    def held_back(self, tenant_id: str, queue: str) -> bool:
        """Whether the leader, not the producer, publishes such a job: its queue is
        fair-shared, or its tenant is capped (publishing more than the cap would only have
        claims refused)."""
        return queue in self.fair or self.capped(tenant_id)


_books: weakref.WeakKeyDictionary[Engine, Book] = weakref.WeakKeyDictionary()
"""One copy per engine (so per database); a disposed engine's copy goes with it."""
_lock = threading.Lock()


def book(conn: Connection, *, clock: float | None = None) -> Book:
    """This process's copy for ``conn``'s engine, re-read through ``conn`` once stale."""
    now = time.monotonic() if clock is None else clock
    key = conn.engine
    with _lock:
        cached = _books.get(key)
    if cached is not None and now - cached.read_at < REFRESH_SECONDS:
        return cached
    repo = QuotaRepository(conn)
    fresh = Book(
        quotas={quota.tenant_id: quota for quota in repo.all()},
        fair={f.queue: f.max_in_flight for f in repo.fair_queues()},
        read_at=now,
    )
    with _lock:
        _books[key] = fresh
    return fresh


def forget() -> None:
    """Drop every cached copy: the next reader reads the rows."""
    with _lock:
        _books.clear()
