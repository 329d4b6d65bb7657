"""The dispatcher: gets a message into the broker for every scheduled job that needs one.

Four sweeps, each paged and each checking leadership first: jobs never published (a
producer's publish failed, a deferred retry came due, the broker lost them), jobs of limited
queues and capped tenants admitted because a slot is free, the fair-shared queues' windows
filled (``jobengine.quotas.fair``), and jobs published long ago and never claimed (a lost
message). Publishing twice is harmless, the claim decides; a failing publish stops the sweep
(the broker is likely away) and the jobs stay unmarked for the next tick.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from jobengine.dispatch import Publisher, publish_jobs
from jobengine.maintenance.leadership import Leadership
from jobengine.maintenance.report import TickReport
from jobengine.quotas.cap_admissions import CapAdmissions
from jobengine.quotas.fair import FairFill
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import DispatchRef, LeaseRepository, QueueLimitRepository

PAGE = 500
MAX_PAGES = 20
"""Per sweep and tick, so a huge backlog leaves room for rescue on the next tick."""


class Dispatcher:
    def __init__(
        self,
        engine: Engine,
        publisher: Publisher,
        leadership: Leadership,
        *,
        grace_seconds: float,
        redispatch_after_seconds: float,
        chunk_size: int,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.leadership = leadership
        self.grace_seconds = grace_seconds
        self.redispatch_after_seconds = redispatch_after_seconds
        self.chunk_size = chunk_size
        self.fair = FairFill(engine, publisher, leadership, chunk_size=chunk_size)
        self.caps = CapAdmissions(engine, publisher, leadership)

    def run(self, report: TickReport) -> None:
        report.dispatched.extend(
            self._sweep(lambda repo: repo.undispatched(self.grace_seconds, PAGE), self.chunk_size)
        )
        self.leadership.ensure()
        with transaction(self.engine) as conn:
            admissions = QueueLimitRepository(conn).admissions()
        report.admitted.extend(publish_jobs(self.engine, self.publisher, admissions))
        self.leadership.ensure()
        report.admitted.extend(self.caps.run())
        self.leadership.ensure()
        report.admitted.extend(self.fair.run())
        report.redispatched.extend(
            self._sweep(
                lambda repo: repo.lost_dispatches(self.redispatch_after_seconds, PAGE),
                self.chunk_size,
            )
        )

    def _sweep(self, read: Callable[[LeaseRepository], list[DispatchRef]], chunk: int) -> list[int]:
        """Publish page after page; each page published is marked, so the next read moves on."""
        sent: list[int] = []
        for _ in range(MAX_PAGES):
            self.leadership.ensure()
            with transaction(self.engine) as conn:
                page = read(LeaseRepository(conn))
            published = publish_jobs(self.engine, self.publisher, page, chunk_size=chunk)
            sent.extend(published)
            if len(page) < PAGE or len(published) < len(page):
                break
        return sent
