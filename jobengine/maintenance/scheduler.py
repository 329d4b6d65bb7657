"""The scheduler: creates each due slot's job (or run), once, while this process leads.

Each tick reads the schedules whose next slot has come (by the injected clock: tests drive
it) and those holding a buffered slot, and decides each in its own transaction, fenced by
the leadership row (``schedules.firing`` says how a slot is decided exactly once). The jobs
(of a run, its roots: the others wait for their parents) are published after commit, as a
producer's are; should the publish fail, the dispatcher's sweep publishes them later. At
most ``SLOTS_PER_TICK`` slots per schedule, ``SLOTS_PER_RUN`` in all and ``PAGE`` schedules
per tick, so promotion and rescue keep their cadence; it reports when the next slot comes,
so the loop wakes for it rather than at its interval (at once while a schedule is behind).

A schedule that raises (a bug, a row Postgres refuses) is set aside for a minute and the
others go on. Its ids are schedules', not jobs', so it keeps a ``SetAside`` of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from sqlalchemy import Engine

from jobengine.dispatch import Publisher, publish_jobs
from jobengine.domain.status import JobStatus
from jobengine.maintenance.leadership import Leadership, LeadershipLost
from jobengine.maintenance.report import SetAside, TickReport
from jobengine.producer import dispatch_ref
from jobengine.schedules.firing import SLOTS_PER_TICK, Decided, decide_due
from jobengine.store import schedule_queries as q
from jobengine.store.backoff import is_transient
from jobengine.store.database import retrying, transaction

log = structlog.get_logger("jobengine.maintenance.scheduler")

PAGE = 100
SLOTS_PER_RUN = 1_000
"""Slots decided per tick over all schedules (each at most ``firing.SLOTS_PER_TICK``): about
a second of work, so one busy tick does not hold up rescue and promotion for long."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        publisher: Publisher,
        leadership: Leadership,
        *,
        actor: str,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.leadership = leadership
        self.set_aside = SetAside()
        self.actor = actor
        self.clock = clock

    def run(self, report: TickReport) -> None:
        now = self.clock()
        self.leadership.ensure()
        with transaction(self.engine) as conn:
            due = [r[0] for r in conn.exec_driver_sql(q.DUE_SCHEDULES, {"now": now, "limit": PAGE})]
            buffered = [r[0] for r in conn.exec_driver_sql(q.BUFFERED_SCHEDULES, {"limit": PAGE})]
        behind = len(due) == PAGE
        budget = SLOTS_PER_RUN
        for schedule_id in dict.fromkeys(due + buffered):
            if budget <= 0:
                behind = True
                break
            if not self.set_aside.holds(schedule_id):
                decided = self._one(schedule_id, now, min(budget, SLOTS_PER_TICK), report)
                budget -= decided.slots
                behind = behind or decided.behind
        if behind:
            report.next_slot_in_seconds = 0.0
            return
        with transaction(self.engine) as conn:
            upcoming: datetime | None = conn.exec_driver_sql(q.NEXT_SLOT).scalar_one()
        # A slot due at ``now`` still undecided belongs to a schedule set aside: no hurry.
        if upcoming is not None and upcoming > now:
            report.next_slot_in_seconds = max(0.0, (upcoming - self.clock()).total_seconds())

    def _one(self, schedule_id: int, now: datetime, limit: int, report: TickReport) -> Decided:
        """Decide at most ``limit`` of one schedule's due slots, and publish their jobs."""
        self.leadership.ensure()
        try:
            decided = retrying(
                lambda: self._decide(schedule_id, now, limit), what="schedule", attempts=3
            )
        except LeadershipLost:
            raise
        except Exception as exc:  # one schedule must never stop the others
            if is_transient(exc):
                raise
            self.set_aside.add("scheduler", schedule_id, exc, report)
            return Decided()
        report.fired.extend(job.id for job in decided.jobs)
        report.slots_skipped += decided.skipped
        fresh = [
            dispatch_ref(job)
            for job in decided.jobs
            if job.status is JobStatus.SCHEDULED and job.dispatched_at is not None
        ]
        publish_jobs(self.engine, self.publisher, fresh, premarked=True)
        return decided

    def _decide(self, schedule_id: int, now: datetime, limit: int) -> Decided:
        with transaction(self.engine) as conn:
            self.leadership.fence(conn)
            return decide_due(conn, schedule_id, now, actor=self.actor, limit=limit)
