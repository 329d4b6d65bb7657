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
are in flight it keeps as ``jobengine.quotas.in_flight`` says. A window of at
least two chunks (``JOBENGINE_DISPATCH_CHUNK_SIZE``) is published in chunks, in the fill's
round-robin order, which is what lets a wide window keep most of a queue's throughput; the
window is the price of fairness: a job waits behind at most about one window of jobs, two when
a fill that could not yet see it (its snapshot taken before it committed) filled the window."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine

from jobengine.dispatch import Publisher, publish_jobs
from jobengine.quotas.book import QuotaRepository
from jobengine.quotas.in_flight import InFlight, Leading
from jobengine.store import quotas_queries as q
from jobengine.store.database import run_all, transaction
from jobengine.store.jobs_repository import DispatchRef

FILL_SECONDS = 0.02


class FairFill:
    def __init__(
        self, engine: Engine, publisher: Publisher, leadership: Leading, *, chunk_size: int = 1
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.leadership = leadership
        self.chunk_size = chunk_size
        self.active = False
        """Whether the last fill found a fair-shared queue: only then do fills run between
        ticks."""
        self._in_flight = InFlight()

    def run(self) -> list[int]:
        """Fill every fair-shared queue's window once; the ids published."""
        self._in_flight.start_term(self.leadership.term)
        with transaction(self.engine) as conn:
            windows = {f.queue: f.max_in_flight for f in QuotaRepository(conn).fair_queues()}
        self.active = bool(windows)
        self._in_flight.keep_only(windows)
        sent: list[int] = []
        for queue, window in windows.items():
            sent.extend(self._fill(queue, window))
        return sent

    def _fill(self, queue: str, window: int) -> list[int]:
        def seed(conn: Connection) -> list[dict[str, Any]]:
            return run_all(conn, q.IN_FLIGHT_IN_QUEUE, {"queue": queue})

        with transaction(self.engine) as conn:
            flying = self._in_flight.current(conn, queue, seed)
            free = window - len(flying)
            if free <= 0:
                return []
            picked = run_all(
                conn,
                q.FAIR_FILL,
                {"queue": queue, "free": free, "flying_tenants": list(flying.values())},
            )
        tenants = {r["id"]: r.pop("tenant_id") for r in picked}
        refs = [DispatchRef(**r) for r in picked]
        published = publish_jobs(self.engine, self.publisher, refs, chunk_size=self.chunk_size)
        self._in_flight.add(queue, {job_id: tenants[job_id] for job_id in published})
        return published
