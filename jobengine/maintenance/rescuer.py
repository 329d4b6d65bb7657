"""The rescuer: takes back leases whose heartbeats stopped (River's job rescuer, ours).

``running → failed`` (``lease_expired``), then by the job's own RetryPolicy on to
``scheduled`` or left final with a dead letter; ``claimed → scheduled`` when it never started.
Rescue follows missed heartbeats only, so a long job that heartbeats is never taken away.
Each job is rescued in its own transaction, fenced by the leadership row; a job that raises
is set aside and the rest go on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Engine

from jobengine import guard
from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.domain.status import JobStatus
from jobengine.errors import JobNotFound, TransitionRefused, ValidationError
from jobengine.execution import Executor
from jobengine.failures import LeaseExpired
from jobengine.guard import Step
from jobengine.maintenance.leadership import Leadership, LeadershipLost
from jobengine.maintenance.report import SetAside, TickReport
from jobengine.retry_policy import RetryDecision, RetryPolicy, error_names
from jobengine.store.backoff import is_transient
from jobengine.store.database import retrying, transaction
from jobengine.store.jobs_repository import ExpiredLease
from jobengine.store.maintenance_repository import MaintenanceRepository

log = structlog.get_logger("jobengine.maintenance.rescuer")

PAGE = 100
RETRY_POLICY_INVALID = "RETRY_POLICY_INVALID"


class Rescuer:
    def __init__(
        self,
        engine: Engine,
        executor: Executor,
        leadership: Leadership,
        set_aside: SetAside,
        *,
        actor: str,
    ) -> None:
        self.engine = engine
        self.executor = executor
        self.leadership = leadership
        self.set_aside = set_aside
        self.actor = actor

    def run(self, report: TickReport) -> None:
        after = 0
        while True:
            self.leadership.ensure()
            with transaction(self.engine) as conn:
                page = MaintenanceRepository(conn).expired_leases(after, PAGE)
            for lease in page:
                if not self.set_aside.holds(lease.id):
                    self._one(lease, report)
            if len(page) < PAGE:
                return
            after = page[-1].id

    def _one(self, lease: ExpiredLease, report: TickReport) -> None:
        self.leadership.ensure()
        try:
            retrying(lambda: self._rescue(lease, report), what="rescue", attempts=3)
        except (TransitionRefused, JobNotFound) as exc:
            log.info("rescue_skipped", job_id=lease.id, reason=str(exc))
        except LeadershipLost:
            raise
        except Exception as exc:  # one row must never stop the rescue of the others
            if is_transient(exc):
                raise  # the store, not the row: the tick ends and the loop backs off
            self.set_aside.add("rescuer", lease.id, exc, report)

    def _rescue(self, lease: ExpiredLease, report: TickReport) -> None:
        if lease.status is JobStatus.CLAIMED:
            with transaction(self.engine) as conn:
                self.leadership.fence(conn)
                guard.transition(
                    conn,
                    lease.id,
                    Step(JobStatus.SCHEDULED, "lease_expired_before_start"),
                    actor=self.actor,
                    lease_token=lease.lease_token,
                    require_lease_expired=True,
                    details={"lease_owner": lease.lease_owner, "leader_term": self.leadership.term},
                )
            report.returned.append(lease.id)
            return
        failure = LeaseExpired(
            f"lease of {lease.lease_owner} expired without a heartbeat",
            details={"lease_owner": lease.lease_owner},
        )
        error: dict[str, Any] = {
            "code": failure.code,
            "class": "jobengine.failures.LeaseExpired",
            "message": str(failure),
            "traceback": "",
            "details": failure.details,
        }
        try:
            decision: RetryDecision | None = self._decide(lease, failure)
        except (ValidationError, TypeError, ValueError) as exc:
            decision = None
            error = {
                "code": RETRY_POLICY_INVALID,
                "class": f"{type(exc).__module__}.{type(exc).__qualname__}",
                "message": f"{failure}, and the job's retry policy does not validate "
                f"({exc}), so it cannot be retried",
                "traceback": "",
                "details": {**failure.details, "retry_policy": lease.retry_policy},
            }
        with transaction(self.engine) as conn:
            self.leadership.fence(conn)
            self._fail(conn, lease, decision, error)
        report.rescued.append(lease.id)

    def _decide(self, lease: ExpiredLease, failure: LeaseExpired) -> RetryDecision:
        """The job's policy decides; if only its type's default is broken, the job's own
        override over the built-in default does, so one bad catalogue entry does not fail
        every job of its type. An override that does not validate raises."""
        try:
            policy = self.executor.policy_for(lease.type, lease.retry_policy)
        except (ValidationError, TypeError, ValueError) as exc:
            policy = RetryPolicy.resolve(lease.retry_policy)
            log.warning(
                "type_retry_policy_invalid", job_id=lease.id, type=lease.type, error=str(exc)
            )
        return policy.decide(lease.attempt - lease.budget_start_attempt, error_names(failure))

    def _fail(
        self,
        conn: Connection,
        lease: ExpiredLease,
        decision: RetryDecision | None,
        error: dict[str, Any],
    ) -> None:
        """``running → failed``, then rescheduled if ``decision`` grants it; a job whose
        policy could not be read (``decision`` None) fails for good as poison."""
        steps = [Step(JobStatus.FAILED, "lease_expired")]
        not_before = None
        reason: DeadLetterReason | None = DeadLetterReason.LEASE_EXPIRED
        if decision is None:
            reason = DeadLetterReason.POISON
        elif decision.retry:
            steps.append(Step(JobStatus.SCHEDULED, decision.reason))
            not_before = datetime.now(UTC) + timedelta(seconds=decision.countdown)
            reason = None
        guard.transition(
            conn,
            lease.id,
            steps,
            actor=self.actor,
            lease_token=lease.lease_token,
            require_lease_expired=True,
            error=error,
            not_before=not_before,
            details={"lease_owner": lease.lease_owner, "leader_term": self.leadership.term},
            dead_letter_reason=reason,
        )
