"""The reaper: the fleet's one maintenance leader.

Exactly one reaper acts at a time: leadership is a Postgres session advisory lock held on a
dedicated connection, so it passes to another reaper as soon as the holder's connection dies
(process killed, host cut off). Each tick the leader, in pages:
  1. takes back expired leases: ``running → failed`` (``lease_expired``), then by the job's own
     RetryPolicy on to ``scheduled`` or left final; ``claimed → scheduled`` when it never started;
  2. moves due ``pending`` jobs to ``scheduled``;
  3. publishes scheduled jobs that have no message yet, and re-publishes those whose message
     seems lost.
Rescue follows missed heartbeats only, so a long job that heartbeats is never taken away.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from jobengine import guard
from jobengine.dispatch import Publisher, publish_jobs
from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.domain.status import JobStatus
from jobengine.errors import JobEngineError, JobNotFound, TransitionRefused
from jobengine.execution import Executor
from jobengine.failures import LeaseExpired
from jobengine.guard import Step
from jobengine.retry_policy import error_names
from jobengine.store.database import store_errors, transaction
from jobengine.store.jobs_repository import ExpiredLease, LeaseRepository, QueueLimitRepository

log = structlog.get_logger("jobengine.reaper")

LEADER_LOCK_KEY = 0x6A6F6265  # "jobe": the one advisory lock the fleet's leader holds
PAGE = 100


@dataclass
class TickReport:
    leader: bool
    rescued: list[int] = field(default_factory=list)
    """Jobs whose running lease expired (now failed or rescheduled)."""
    returned: list[int] = field(default_factory=list)
    """Jobs claimed but never started, given back to ``scheduled``."""
    promoted: list[int] = field(default_factory=list)
    dispatched: list[int] = field(default_factory=list)
    admitted: list[int] = field(default_factory=list)
    """Jobs of limited queues published because a slot was free."""
    redispatched: list[int] = field(default_factory=list)


class Leadership:
    """The advisory lock, held on its own connection for as long as this process leads."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            if self._alive(self._conn):
                return True
            self.release()
        conn = self._engine.connect()
        try:
            got = bool(
                conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK_KEY}
                ).scalar()
            )
            conn.commit()
        except DBAPIError:
            conn.invalidate()
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LEADER_LOCK_KEY})
            conn.commit()
            conn.close()
        except DBAPIError:
            conn.invalidate()

    @staticmethod
    def _alive(conn: Connection) -> bool:
        try:
            conn.execute(text("SELECT 1"))
            conn.commit()
            return True
        except DBAPIError:
            conn.invalidate()
            return False


class Reaper:
    def __init__(
        self,
        engine: Engine,
        publisher: Publisher,
        executor: Executor,
        *,
        name: str,
        redispatch_after_seconds: float,
        dispatch_grace_seconds: float,
        chunk_size: int = 1,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.executor = executor
        self.name = name
        self.redispatch_after_seconds = redispatch_after_seconds
        self.dispatch_grace_seconds = dispatch_grace_seconds
        self.chunk_size = chunk_size
        self.leadership = Leadership(engine)

    def tick(self) -> TickReport:
        """One round of maintenance if this reaper leads; otherwise nothing."""
        with store_errors():
            leading = self.leadership.try_acquire()
        if not leading:
            return TickReport(leader=False)
        report = TickReport(leader=True)
        self._rescue_expired(report)
        self._promote_due(report)
        with transaction(self.engine) as conn:
            undispatched = LeaseRepository(conn).undispatched(self.dispatch_grace_seconds)
        report.dispatched = publish_jobs(
            self.engine, self.publisher, undispatched, chunk_size=self.chunk_size
        )
        with transaction(self.engine) as conn:
            admissions = QueueLimitRepository(conn).admissions()
        report.admitted = publish_jobs(self.engine, self.publisher, admissions)
        with transaction(self.engine) as conn:
            lost = LeaseRepository(conn).lost_dispatches(self.redispatch_after_seconds)
        report.redispatched = publish_jobs(
            self.engine, self.publisher, lost, chunk_size=self.chunk_size
        )
        if any((report.rescued, report.returned, report.promoted, report.redispatched)):
            log.info(
                "reaper_tick",
                reaper=self.name,
                rescued=report.rescued,
                returned=report.returned,
                promoted=report.promoted,
                dispatched=len(report.dispatched),
                redispatched=report.redispatched,
            )
        return report

    def run(self, stop: threading.Event, interval_seconds: float) -> None:
        """Tick until ``stop`` is set; a failing tick is logged and retried next interval."""
        try:
            while not stop.is_set():
                try:
                    self.tick()
                except JobEngineError as exc:
                    log.warning("reaper_tick_failed", reaper=self.name, error=str(exc))
                stop.wait(interval_seconds)
        finally:
            self.leadership.release()

    def _rescue_expired(self, report: TickReport) -> None:
        while True:
            with transaction(self.engine) as conn:
                page = LeaseRepository(conn).expired(PAGE)
            if not page:
                return
            for lease in page:
                self._rescue_one(lease, report)
            if len(page) < PAGE:
                return

    def _rescue_one(self, lease: ExpiredLease, report: TickReport) -> None:
        try:
            with transaction(self.engine) as conn:
                if lease.status is JobStatus.CLAIMED:
                    guard.transition(
                        conn,
                        lease.id,
                        Step(JobStatus.SCHEDULED, "lease_expired_before_start"),
                        actor=self.name,
                        lease_token=lease.lease_token,
                        require_lease_expired=True,
                        details={"lease_owner": lease.lease_owner},
                    )
                    report.returned.append(lease.id)
                    return
                failure = LeaseExpired(
                    f"lease of {lease.lease_owner} expired without a heartbeat",
                    details={"lease_owner": lease.lease_owner},
                )
                error = {
                    "code": failure.code,
                    "class": "jobengine.failures.LeaseExpired",
                    "message": str(failure),
                    "traceback": "",
                    "details": failure.details,
                }
                policy = self.executor.policy_for(lease.type, lease.retry_policy)
                decision = policy.decide(
                    lease.attempt - lease.budget_start_attempt, error_names(failure)
                )
                steps = [Step(JobStatus.FAILED, "lease_expired")]
                not_before = None
                if decision.retry:
                    steps.append(Step(JobStatus.SCHEDULED, decision.reason))
                    not_before = datetime.now(UTC) + timedelta(seconds=decision.countdown)
                guard.transition(
                    conn,
                    lease.id,
                    steps,
                    actor=self.name,
                    lease_token=lease.lease_token,
                    require_lease_expired=True,
                    error=error,
                    not_before=not_before,
                    details={"lease_owner": lease.lease_owner},
                    dead_letter_reason=None if decision.retry else DeadLetterReason.LEASE_EXPIRED,
                )
                report.rescued.append(lease.id)
        except (TransitionRefused, JobNotFound) as exc:
            log.info("rescue_skipped", job_id=lease.id, reason=str(exc))

    def _promote_due(self, report: TickReport) -> None:
        with transaction(self.engine) as conn:
            due = LeaseRepository(conn).due_pending()
        for job_id in due:
            try:
                with transaction(self.engine) as conn:
                    guard.transition(
                        conn,
                        job_id,
                        Step(JobStatus.SCHEDULED, "not_before reached"),
                        actor=self.name,
                    )
                report.promoted.append(job_id)
            except (TransitionRefused, JobNotFound) as exc:
                log.info("promote_skipped", job_id=job_id, reason=str(exc))
