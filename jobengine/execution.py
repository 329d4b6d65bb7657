"""The executor's steps, one store call each: claim, complete, retry, fail, cancel.

Celery's task and signal hooks (``workers/``) stay thin and call these. Every write by a lease
holder presents its fencing token, so a worker whose lease was taken over changes nothing.
"""

from __future__ import annotations

import time
import traceback as tb
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Engine

from jobengine import guard
from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.domain.job import Job, NewJob
from jobengine.domain.status import JobStatus
from jobengine.errors import JobEngineError, JobNotFound, TransitionRefused, UnknownJobType
from jobengine.guard import Step
from jobengine.job_types import JobTypes
from jobengine.job_types import registry as default_registry
from jobengine.retry_policy import RetryDecision, RetryPolicy, error_names
from jobengine.store.database import SingleStatements, transaction
from jobengine.store.jobs_repository import JobsRepository, LeaseRepository, QueueLimitRepository

log = structlog.get_logger("jobengine.execution")

MAX_MESSAGE_CHARS = 2_000
LIMITS_REFRESH_SECONDS = 2.0
MAX_TRACEBACK_CHARS = 8_000


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this worker holds: the fencing token goes with every later write."""

    job: Job
    owner: str

    @property
    def job_id(self) -> int:
        return self.job.id

    @property
    def token(self) -> int:
        return self.job.lease_token

    @property
    def attempt(self) -> int:
        return self.job.attempt


TIMEOUT_ERRORS = ("SoftTimeLimitExceeded", "TimeLimitExceeded")
"""Celery's time-limit errors (soft: the handler was told; hard: its process was killed)."""


def error_code(exc: BaseException) -> str:
    if type(exc).__name__ in TIMEOUT_ERRORS:
        return "TIMEOUT"
    return str(getattr(exc, "code", "HANDLER_ERROR"))


def describe_error(exc: BaseException, traceback_text: str | None = None) -> dict[str, Any]:
    """The stored form of a failure: code, class, message and a bounded traceback."""
    text = traceback_text
    if text is None and exc.__traceback__ is not None:
        text = "".join(tb.format_exception(exc))
    cls = type(exc)
    return {
        "code": error_code(exc),
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "message": str(exc)[:MAX_MESSAGE_CHARS],
        "traceback": (text or "")[-MAX_TRACEBACK_CHARS:],
        "details": getattr(exc, "details", {}) or {},
    }


class Executor:
    def __init__(
        self,
        engine: Engine,
        *,
        lease_ttl_seconds: float,
        types: JobTypes = default_registry,
    ) -> None:
        self.engine = engine
        self._statements = SingleStatements(engine)
        self.lease_ttl_seconds = lease_ttl_seconds
        self.types = types
        self._limits: dict[str, int] = {}
        self._limits_read_at = float("-inf")

    def queue_is_limited(self, queue: str | None) -> bool:
        """Whether claims in ``queue`` must take the limit's turn; re-read every few seconds,
        so a new limit applies fleet-wide within ``LIMITS_REFRESH_SECONDS``."""
        if queue is None:
            return False
        now = time.monotonic()
        if now - self._limits_read_at > LIMITS_REFRESH_SECONDS:
            with transaction(self.engine) as conn:
                self._limits = QueueLimitRepository(conn).all()
            self._limits_read_at = now
        return queue in self._limits

    def _claim_within_limit(
        self, job_ids: list[int], owner: str, queue: str, *, chunk: bool
    ) -> list[Job]:
        """Claim under the queue's limit: lock its limit row, count (a new statement, so it
        sees every claim committed before ours), claim at most the free slots. Jobs left over
        lose their dispatch mark; the leader publishes them when a slot frees."""
        with transaction(self.engine) as conn:
            limits = QueueLimitRepository(conn)
            max_running = limits.lock(queue)
            free = len(job_ids) if max_running is None else max_running - limits.leased(queue)
            take, leave = job_ids[: max(free, 0)], job_ids[max(free, 0) :]
            claimed: list[Job] = []
            if take and chunk:
                claimed = self._claim_many(conn, take, owner)
            elif take:
                claimed = [self._claim_and_start(conn, take[0], owner)]
            if leave:
                LeaseRepository(conn).clear_dispatched(leave)
                log.info("claim_deferred_by_queue_limit", queue=queue, jobs=leave)
        return claimed

    def policy_for(self, job_type: str, override: dict[str, Any] | None) -> RetryPolicy:
        try:
            default = self.types.get(job_type).retry_policy
        except UnknownJobType:
            default = {}
        return RetryPolicy.resolve(default, override)

    def claim(self, job_id: int, owner: str, queue: str | None = None) -> Claim | None:
        """Take the lease and start: ``scheduled → claimed → running`` in one statement.

        None means this message must run nothing: the job is final, cancelled, leased by a
        live worker, not yet due, or unknown. The reason is logged, not raised, because a
        refused claim is the normal fate of a duplicate message.
        """
        if queue is not None and self.queue_is_limited(queue):
            try:
                within = self._claim_within_limit([job_id], owner, queue, chunk=False)
            except (TransitionRefused, JobNotFound) as exc:
                log.info("claim_refused", job_id=job_id, owner=owner, reason=str(exc))
                return None
            return Claim(job=within[0], owner=owner) if within else None
        try:
            with self._statements.connection() as conn:
                job = self._claim_and_start(conn, job_id, owner)
        except (TransitionRefused, JobNotFound) as exc:
            log.info("claim_refused", job_id=job_id, owner=owner, reason=str(exc))
            return None
        return Claim(job=job, owner=owner)

    def _claim_and_start(self, conn: Connection, job_id: int, owner: str) -> Job:
        """``scheduled → claimed → running`` in one statement, for a job that is due."""
        return guard.transition(
            conn,
            job_id,
            [Step(JobStatus.CLAIMED), Step(JobStatus.RUNNING)],
            actor=owner,
            lease_owner=owner,
            lease_ttl_seconds=self.lease_ttl_seconds,
            require_due=True,
        ).job

    def _claim_many(self, conn: Connection, job_ids: list[int], owner: str) -> list[Job]:
        """``scheduled → claimed`` for every job of ``job_ids`` still claimable and due."""
        return guard.transition_many(
            conn,
            job_ids,
            Step(JobStatus.CLAIMED),
            actor=owner,
            lease_owner=owner,
            lease_ttl_seconds=self.lease_ttl_seconds,
            require_due=True,
        )

    def claim_chunk(self, job_ids: list[int], owner: str, queue: str | None = None) -> list[Claim]:
        """Claim, in one statement, every job of a chunk message that is still claimable.

        Each claimed job gets its own fencing token and stays ``claimed`` until ``start``; a
        worker that dies before starting it loses the lease and the reaper hands the job back.
        """
        if queue is not None and self.queue_is_limited(queue):
            jobs = self._claim_within_limit(sorted(set(job_ids)), owner, queue, chunk=True)
            return [Claim(job=job, owner=owner) for job in jobs]
        with self._statements.connection() as conn:
            jobs = self._claim_many(conn, job_ids, owner)
        if len(jobs) < len(job_ids):
            log.info("chunk_partly_claimed", owner=owner, asked=len(job_ids), claimed=len(jobs))
        return [Claim(job=job, owner=owner) for job in jobs]

    def start(self, claim: Claim) -> Claim | None:
        """``claimed → running`` for a job claimed with its chunk; None if it was taken away."""
        job = self._finish(
            claim, [Step(JobStatus.RUNNING)], lease_ttl_seconds=self.lease_ttl_seconds
        )
        return None if job is None else Claim(job=job, owner=claim.owner)

    def give_back(self, claim: Claim, reason: str) -> Job | None:
        """``claimed → scheduled`` for a job this worker claimed but will not start."""
        return self._finish(claim, [Step(JobStatus.SCHEDULED, reason)])

    def adopt(self, job_type: str, payload: Any, celery_task_id: str, owner: str) -> Claim | None:
        """Record a job for a message sent by plain Celery, then claim it.

        The Celery task id is the job's idempotency key, so a redelivery of the same message
        finds the same job (and its claim decides, as for any other duplicate).
        """
        job = self._record_adopted(job_type, payload, celery_task_id, owner)
        if job is None:
            return None
        if job.status is not JobStatus.SCHEDULED:
            log.info("adopted_message_refused", job_id=job.id, status=job.status.value)
            return None
        return self.claim(job.id, owner)

    def poison(self, job_id: int, owner: str, error: dict[str, Any]) -> Job | None:
        """Dead-letter a scheduled job whose message can never run a handler (undecodable, or
        no handler here): ``scheduled → claimed → running → failed`` in one statement, so the
        attempt is counted and the timeline shows which worker met the message. None when the
        job was not waiting to run (final, leased elsewhere): a stale message changes nothing.
        """
        try:
            with self._statements.connection() as conn:
                return guard.transition(
                    conn,
                    job_id,
                    [
                        Step(JobStatus.CLAIMED),
                        Step(JobStatus.RUNNING),
                        Step(JobStatus.FAILED, error.get("code")),
                    ],
                    actor=owner,
                    lease_owner=owner,
                    lease_ttl_seconds=self.lease_ttl_seconds,
                    error=error,
                    dead_letter_reason=DeadLetterReason.POISON,
                ).job
        except (TransitionRefused, JobNotFound) as exc:
            log.info("poison_message_ignored", job_id=job_id, reason=str(exc))
            return None

    def adopt_poison(
        self, job_type: str, payload: Any, celery_task_id: str, owner: str, error: dict[str, Any]
    ) -> Job | None:
        """Record a plain producer's message that cannot run as a job, then dead-letter it, so
        what it carried is kept in Postgres rather than dropped with the message."""
        job = self._record_adopted(job_type, payload, celery_task_id, owner)
        return None if job is None else self.poison(job.id, owner, error)

    def _record_adopted(
        self, job_type: str, payload: Any, celery_task_id: str, owner: str
    ) -> Job | None:
        """The job for a plain Celery message, created on first sight; keyed by its task id."""
        new = NewJob(type=job_type, payload=payload, idempotency_key=f"celery:{celery_task_id}")
        with transaction(self.engine) as conn:
            job = guard.create_job(conn, new, schedule=True, actor=owner, reason="adopted")
            if job is not None:
                return job
            found = JobsRepository(conn).find_by_idempotency_key(
                new.tenant_id, new.idempotency_key or ""
            )
        return found[0] if found else None

    def complete(self, claim: Claim, result: Any) -> Job | None:
        return self._finish(claim, [Step(JobStatus.COMPLETED, "handler returned")], result=result)

    def decide_retry(self, claim: Claim, exc: BaseException) -> RetryDecision:
        policy = self.policy_for(claim.job.type, claim.job.retry_policy)
        return policy.decide(claim.job.budget_attempt, error_names(exc))

    def record_retry(
        self, claim: Claim, error: dict[str, Any], decision: RetryDecision
    ) -> Job | None:
        """``running → failed → scheduled`` in one transaction, with ``not_before`` set."""
        not_before = datetime.now(UTC) + timedelta(seconds=decision.countdown)
        return self._finish(
            claim,
            [
                Step(JobStatus.FAILED, error.get("code", "HANDLER_ERROR")),
                Step(JobStatus.SCHEDULED, decision.reason),
            ],
            error=error,
            not_before=not_before,
            details={"countdown": round(decision.countdown, 3)},
        )

    def record_failure(
        self, claim: Claim, error: dict[str, Any], dead_letter: DeadLetterReason
    ) -> Job | None:
        """``running → failed`` for good: the same statement writes the dead letter."""
        return self._finish(
            claim,
            [Step(JobStatus.FAILED, error.get("code"))],
            error=error,
            dead_letter_reason=dead_letter,
        )

    def record_outcome_of_failure(
        self, claim: Claim, exc: BaseException, error: dict[str, Any]
    ) -> Job | None:
        """A failed attempt as the RetryPolicy decides: retried, or failed for good."""
        decision = self.decide_retry(claim, exc)
        if decision.retry:
            return self.record_retry(claim, error, decision)
        return self.record_failure(
            claim, error, decision.dead_letter or DeadLetterReason.NON_RETRYABLE
        )

    def fail_lost_attempt(
        self, job_id: int, attempt: int, exc: BaseException, actor: str
    ) -> Job | None:
        """Record the failure of an attempt whose process is gone (killed at its hard time
        limit), from outside it. Each claim counts a new attempt, so ``attempt`` names the
        lease: the token read for it fences the write, and a job that moved on is left alone.
        """
        with transaction(self.engine) as conn:
            job = JobsRepository(conn).get(job_id)
        if job.status is not JobStatus.RUNNING or job.attempt != attempt:
            log.info("lost_attempt_already_moved", job_id=job_id, attempt=attempt)
            return None
        claim = Claim(job=job, owner=actor)
        return self.record_outcome_of_failure(claim, exc, describe_error(exc, ""))

    def report_progress(self, claim: Claim, progress: dict[str, Any]) -> bool:
        with self._statements.connection() as conn:
            return LeaseRepository(conn).record_progress(claim.job_id, claim.token, progress)

    def _finish(self, claim: Claim, steps: list[Step], **kwargs: Any) -> Job | None:
        try:
            with self._statements.connection() as conn:
                moved = guard.transition(
                    conn,
                    claim.job_id,
                    steps,
                    actor=claim.owner,
                    lease_token=claim.token,
                    **kwargs,
                )
        except TransitionRefused as exc:
            log.warning(
                "outcome_refused",
                job_id=claim.job_id,
                attempt=claim.attempt,
                status=steps[-1].to.value,
                reason=str(exc),
            )
            return None
        except JobEngineError as exc:
            log.error("outcome_not_recorded", job_id=claim.job_id, error=str(exc))
            raise
        return moved.job
