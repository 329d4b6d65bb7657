"""The leader's admissions of capped tenants' jobs: published as their slots free.

A capped tenant's producers publish nothing (``held_back``): a backlog in the broker would
only have its claims refused, one after another. The leader publishes as many of its jobs as
it has free slots (its cap less its jobs claimed or running and its messages not yet claimed),
on each tick and, while some tenant has a cap, between ticks with the fair fill, so a slot
freed is used within a fraction of a second.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine

from jobengine.dispatch import Publisher, publish_jobs
from jobengine.quotas.in_flight import InFlight, Leading
from jobengine.store import quotas_queries as q
from jobengine.store.database import run_all, transaction
from jobengine.store.jobs_repository import DispatchRef

KEY = "capped"


def _seed(conn: Connection) -> list[dict[str, object]]:
    return run_all(conn, q.CAPPED_IN_FLIGHT, {})


class CapAdmissions:
    def __init__(self, engine: Engine, publisher: Publisher, leadership: Leading) -> None:
        self.engine = engine
        self.publisher = publisher
        self.leadership = leadership
        self.active = False
        """Whether the last run found a capped tenant: only then do runs happen between
        ticks."""
        self._in_flight = InFlight()

    def run(self) -> list[int]:
        """Publish what the caps allow now; the ids published."""
        self._in_flight.start_term(self.leadership.term)
        with transaction(self.engine) as conn:
            flying = self._in_flight.current(conn, KEY, _seed)
            picked = run_all(conn, q.CAP_ADMISSIONS, {"flying_tenants": list(flying.values())})
            self.active = bool(run_all(conn, q.ANY_CAP, {}))
        tenants = {r["id"]: r.pop("tenant_id") for r in picked}
        published = publish_jobs(self.engine, self.publisher, [DispatchRef(**r) for r in picked])
        self._in_flight.add(KEY, {job_id: tenants[job_id] for job_id in published})
        return published
