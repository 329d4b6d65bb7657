"""The promoter: ``pending → scheduled`` for jobs whose ``not_before`` has come.

It reports when it must run again, so the leader wakes for it: when the next pending job
comes due, and, while rate limits exist, within their burst tolerance (``limits.admission.
watch_seconds``), since a job a submission holds from now on comes due within it. A rate
limit's slots are a tenth of a second apart where the interval is seconds, and a promoter
late by more than a limit's tolerance would admit the jobs due meanwhile all at once: so
each page is paced first (``limits.pacing``), a job that late booking its slots again.

A page of due jobs moves in one fenced statement (``guard.transition_many``). Should that
statement raise for a reason other than the store being away, the page is retried one job at
a time, so the job that raised is found, set aside, and the others still move.
"""

from __future__ import annotations

from functools import partial

import structlog
from sqlalchemy import Engine

from jobengine import guard
from jobengine.domain.status import JobStatus
from jobengine.errors import JobNotFound, TransitionRefused
from jobengine.guard import Step
from jobengine.limits.admission import watch_seconds
from jobengine.limits.pacing import pace
from jobengine.maintenance.leadership import Leadership, LeadershipLost
from jobengine.maintenance.report import SetAside, TickReport
from jobengine.store.backoff import is_transient
from jobengine.store.database import retrying, transaction
from jobengine.store.maintenance_repository import MaintenanceRepository

log = structlog.get_logger("jobengine.maintenance.promoter")

PAGE = 500
STEP = Step(JobStatus.SCHEDULED, "not_before reached")


class Promoter:
    def __init__(
        self, engine: Engine, leadership: Leadership, set_aside: SetAside, *, actor: str
    ) -> None:
        self.engine = engine
        self.leadership = leadership
        self.set_aside = set_aside
        self.actor = actor

    def run(self, report: TickReport) -> None:
        after = 0
        while True:
            self.leadership.ensure()
            with transaction(self.engine) as conn:
                page = MaintenanceRepository(conn).due_pending(after, PAGE)
            due = [job_id for job_id in page if not self.set_aside.holds(job_id)]
            try:
                report.promoted.extend(
                    retrying(partial(self._promote, due), what="promote", attempts=3)
                )
            except LeadershipLost:
                raise
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.warning("promote_page_failed", jobs=len(due), error=str(exc))
                for job_id in due:
                    self._one(job_id, report)
            if len(page) < PAGE:
                report.wake_in_seconds = self._wake_in()
                return
            after = page[-1]

    def _wake_in(self) -> float | None:
        with transaction(self.engine) as conn:
            wakes = (MaintenanceRepository(conn).next_due_seconds(), watch_seconds(conn))
        return min((w for w in wakes if w is not None), default=None)

    def _promote(self, job_ids: list[int]) -> list[int]:
        if not job_ids:
            return []
        with transaction(self.engine) as conn:
            self.leadership.fence(conn)
            moved = guard.transition_many(conn, pace(conn, job_ids), STEP, actor=self.actor)
        return [job.id for job in moved]

    def _one(self, job_id: int, report: TickReport) -> None:
        self.leadership.ensure()
        try:
            with transaction(self.engine) as conn:
                self.leadership.fence(conn)
                if not pace(conn, [job_id]):
                    return
                guard.transition(conn, job_id, STEP, actor=self.actor)
            report.promoted.append(job_id)
        except (TransitionRefused, JobNotFound) as exc:
            log.info("promote_skipped", job_id=job_id, reason=str(exc))
        except LeadershipLost:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise
            self.set_aside.add("promoter", job_id, exc, report)
