"""Fair shares of a queue: the leader publishes its jobs round-robin across tenants.

Redis serves a broker queue first in, first out, so once a tenant's 100,000 messages are in
it, another tenant's job waits behind all of them. For a fair-shared queue the producers
therefore publish nothing (``jobengine.quotas.admission.held_back``); the leader keeps at most
``max_in_flight`` of its messages in the broker and fills the free slots from Postgres, in
rounds across the tenants waiting (weighted by ``tenant_quotas.weight``), so a job submitted
now waits behind at most about one window of other tenants' jobs.

The fill runs on each maintenance tick and, while some queue is fair-shared, every
``FILL_SECONDS`` between ticks: a window drains as fast as workers claim, so the interval
bounds a fair queue's throughput at about ``max_in_flight / FILL_SECONDS``. Which messages
are in flight the fill remembers by id (its own publishes, read back by primary key), and
reads from the queue's scheduled jobs only when it takes over (a new leader's term).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from jobengine.dispatch import Publisher, publish_jobs
from jobengine.maintenance.leadership import Leadership
from jobengine.quotas.book import QuotaRepository
from jobengine.store import quotas_queries as q
from jobengine.store.database import run_all, transaction
from jobengine.store.jobs_repository import DispatchRef

FILL_SECONDS = 0.05


class FairFill:
    def __init__(self, engine: Engine, publisher: Publisher, leadership: Leadership) -> None:
        self.engine = engine
        self.publisher = publisher
        self.leadership = leadership
        self.active = False
        """Whether the last fill found a fair-shared queue: only then do fills run between
        ticks."""
        self._in_flight: dict[str, dict[int, str]] = {}
        self._term: int | None = None

    def run(self) -> list[int]:
        """Fill every fair-shared queue's window once; the ids published."""
        if self.leadership.term != self._term:
            self._in_flight.clear()
            self._term = self.leadership.term
        with transaction(self.engine) as conn:
            windows = {f.queue: f.max_in_flight for f in QuotaRepository(conn).fair_queues()}
        self.active = bool(windows)
        for gone in set(self._in_flight) - set(windows):
            del self._in_flight[gone]
        sent: list[int] = []
        for queue, window in windows.items():
            sent.extend(self._fill(queue, window))
        return sent

    def _fill(self, queue: str, window: int) -> list[int]:
        with transaction(self.engine) as conn:
            known = self._in_flight.get(queue)
            rows: list[dict[str, Any]] = []
            if known is None:
                rows = run_all(conn, q.IN_FLIGHT_IN_QUEUE, {"queue": queue})
            elif known:
                rows = run_all(conn, q.STILL_IN_FLIGHT, {"ids": list(known)})
            flying = {r["id"]: r["tenant_id"] for r in rows}
            self._in_flight[queue] = flying
            free = window - len(flying)
            if free <= 0:
                return []
            picked = run_all(
                conn,
                q.FAIR_FILL,
                {"queue": queue, "free": free, "flying_tenants": list(flying.values())},
            )
        tenants = {r["id"]: r.pop("tenant_id") for r in picked}
        published = publish_jobs(self.engine, self.publisher, [DispatchRef(**r) for r in picked])
        flying.update((job_id, tenants[job_id]) for job_id in published)
        return published
