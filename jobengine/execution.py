"""The executor's store calls: claim, start, record an outcome, hand back, poison, adopt.

The attempt pipeline (``jobengine.attempt``) and the worker's Celery glue call these. Every
write by a lease holder presents its fencing token, so a worker whose lease was taken over
changes nothing. Claims and outcomes are retried after a transient store error
(``store.database.retrying``), on a fresh connection; the fence keeps a repeated write safe,
and a repeat that finds its own earlier write already committed takes it as done.
"""

from __future__ import annotations

import time
import traceback as tb
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import structlog
from sqlalchemy import Connection, Engine

from jobengine import guard, tracing
from jobengine.admission import Admission
from jobengine.audit.origin import Origin
from jobengine.cancellation import Cancelled, cancel_job
from jobengine.dispatch import Publisher, chunked
from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.domain.job import Job, NewJob
from jobengine.domain.run import RunJobSpec
from jobengine.domain.status import JobStatus
from jobengine.errors import (
    JobEngineError,
    JobNotFound,
    StoreUnavailable,
    TransitionRefused,
    UnknownJobType,
)
from jobengine.guard import Released, Step
from jobengine.job_types import JobTypes
from jobengine.job_types import registry as default_registry
from jobengine.outcomes import Completed, Failed, HandedBack, Outcome, Retry
from jobengine.producer import dispatch_ref
from jobengine.quotas.book import Book, book
from jobengine.quotas.caps import capped_tenants, within_caps
from jobengine.retry_policy import RetryPolicy, error_names
from jobengine.runs.service import default_validator
from jobengine.runs.spawn import spawn as spawn_into_run
from jobengine.store import queries, quotas_queries
from jobengine.store.database import TRANSIENT, SharedConnection, retrying, run_all
from jobengine.store.jobs_repository import JobsRepository, LeaseRepository, QueueLimitRepository

log = structlog.get_logger("jobengine.execution")

T = TypeVar("T")

MAX_MESSAGE_CHARS = 2_000
LIMITS_REFRESH_SECONDS = 2.0
MAX_TRACEBACK_CHARS = 8_000
MAX_WRITE_DEADLINE_SECONDS = 10.0
CLAIM_PATIENCE_SECONDS = 3.0
"""How long a claim keeps retrying an unreachable store before its message goes back: also
the least time between two deliveries of one message while Postgres stays away."""
MARK_RELEASED_EVERY = 1_000
"""A fan-out's released children are marked dispatched this many at a time as they go out."""
COMPLETED_REASON = "handler returned"
STORE_TRIES = 30
"""Enough tries (backoff up to 1 s) that the deadline, not the count, ends a call's retries."""


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


def held_of(done: Sequence[tuple[Claim, Any]]) -> list[guard.Held]:
    """Completions as the guard takes them; each claim says whether its job is in a run."""
    return [
        guard.Held(claim.job_id, claim.token, result, in_run=claim.job.run_id is not None)
        for claim, result in done
    ]


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
        connection: SharedConnection | None = None,
        claim_patience_seconds: float = CLAIM_PATIENCE_SECONDS,
        release_chunk_size: int = 20,
        admission: Admission | None = None,
    ) -> None:
        self.engine = engine
        self.admission = admission or Admission()
        """Paces this process's claims while Postgres is saturated (``jobengine.admission``)."""
        self.release_chunk_size = release_chunk_size
        """Messages for a run's released children go out in chunks of this many (a fan-out)."""
        self.connection = connection or SharedConnection(engine)
        self.lease_ttl_seconds = lease_ttl_seconds
        self.write_deadline_seconds = min(MAX_WRITE_DEADLINE_SECONDS, lease_ttl_seconds / 2)
        """Outcome writes stop retrying well within the lease, so the reaper, not a
        retrying worker, decides about a job whose worker cannot reach the store."""
        self.claim_patience_seconds = claim_patience_seconds
        self._store_away = False
        """Set when a claim gave up on the store, cleared by the next one that reaches it."""
        self.types = types
        self._limits: dict[str, int] = {}
        self._capped_tenants: set[str] = set()
        self._limits_read_at = float("-inf")

    # ---- retries -------------------------------------------------------------------------

    def _retried(self, fn: Callable[[bool], T], *, what: str, deadline: float) -> T:
        """``fn(repeated)``, retried after transient errors; ``repeated`` tells a later try
        that an earlier one may have committed before its connection was lost."""
        tries = 0

        def once() -> T:
            nonlocal tries
            tries += 1
            return fn(tries > 1)

        return retrying(once, attempts=STORE_TRIES, deadline=deadline, what=what)

    def _claim_retried(self, fn: Callable[[bool], T], *, what: str) -> T:
        """A claim, patient while the store is thought reachable; once one claim has given up
        on it, each later one tries once until one gets through, so a worker cut off from
        Postgres hands its messages back at once instead of holding each for its patience."""
        deadline = 0.0 if self._store_away else self.claim_patience_seconds
        try:
            result = self._retried(self._admitted(fn), what=what, deadline=deadline)
        except StoreUnavailable:
            self._store_away = True
            raise
        self._store_away = False
        return result

    def _admitted(self, fn: Callable[[bool], T]) -> Callable[[bool], T]:
        """Each try of a claim waits for its turn, and tells the admission how it went."""

        def paced(repeated: bool) -> T:
            self.admission.admit()
            started = time.monotonic()
            try:
                result = fn(repeated)
            except TRANSIENT as exc:
                self.admission.congested(exc.code)
                raise
            self.admission.observe(time.monotonic() - started)
            return result

        return paced

    # ---- queue limits ----------------------------------------------------------------------

    def _refresh_limits(self) -> None:
        now = time.monotonic()
        if now - self._limits_read_at > LIMITS_REFRESH_SECONDS:
            with self.connection.use() as conn:
                self._limits = QueueLimitRepository(conn).all()
                self._capped_tenants = capped_tenants(conn)
            self._limits_read_at = now

    def queue_is_limited(self, queue: str | None) -> bool:
        """Whether claims in ``queue`` must take the limit's turn; re-read every few seconds,
        so a new limit applies fleet-wide within ``LIMITS_REFRESH_SECONDS``."""
        if queue is None:
            return False
        self._refresh_limits()
        return queue in self._limits

    def _limited_queue_of(self, job_ids: list[int], queue: str | None) -> str | None:
        """The limited queue these jobs belong to, if any. While no queue has a limit (the
        usual case) this costs nothing but the cached limit list; otherwise one primary-key
        read of the jobs' queue, since a message's broker queue does not name it."""
        if queue is not None:
            return queue if self.queue_is_limited(queue) else None
        self._refresh_limits()
        if not self._limits:
            return None
        with self.connection.use() as conn:
            rows = run_all(conn, queries.QUEUES_OF_JOBS, {"ids": job_ids})
        limited = [r["queue"] for r in rows if r["queue"] in self._limits]
        return limited[0] if limited else None

    def _tenant_capped(self, job_ids: list[int]) -> bool:
        """Whether a job of ``job_ids`` belongs to a tenant with a cap (``jobengine.quotas``):
        nothing but the cached set while no tenant has one, else a primary-key read."""
        self._refresh_limits()
        if not self._capped_tenants:
            return False
        with self.connection.use() as conn:
            rows = run_all(conn, quotas_queries.TENANTS_OF_JOBS, {"ids": job_ids})
        return any(r["tenant_id"] in self._capped_tenants for r in rows)

    def _claim_within_limit(
        self, job_ids: list[int], owner: str, queue: str | None, *, chunk: bool
    ) -> list[Job]:
        """Claim under the queue's limit and the tenants' caps: lock the limit row, count (a
        new statement, so it sees every claim committed before ours), claim at most the free
        slots; then the same for each capped tenant's row. Jobs left over lose their dispatch
        mark; the leader publishes them when a slot frees."""
        with self.connection.transaction() as conn:
            take = job_ids
            if queue is not None:
                limits = QueueLimitRepository(conn)
                max_running = limits.lock(queue)
                free = len(job_ids) if max_running is None else max_running - limits.leased(queue)
                take = job_ids[: max(free, 0)]
                if len(take) < len(job_ids):
                    over = job_ids[len(take) :]
                    log.info("claim_deferred_by_queue_limit", queue=queue, jobs=over)
            capped = take and self._capped_tenants
            take, deferred = within_caps(conn, take) if capped else (take, [])
            leave = [job_id for job_id in job_ids if job_id not in set(take)]
            for kept in deferred:
                log.info(
                    "claim_deferred_by_tenant_cap",
                    tenant_id=kept.tenant_id,
                    max_running=kept.max_running,
                    running=kept.running,
                    jobs=kept.job_ids,
                )
            claimed: list[Job] = []
            if take and chunk:
                claimed = self._claim_many(conn, take, owner)
            elif take:
                claimed = [self._claim_and_start(conn, take[0], owner)]
            if leave:
                LeaseRepository(conn).clear_dispatched(leave)
        return claimed

    def policy_for(self, job_type: str, override: dict[str, Any] | None) -> RetryPolicy:
        try:
            default = self.types.get(job_type).retry_policy
        except UnknownJobType:
            default = {}
        return RetryPolicy.resolve(default, override)

    # ---- claims ----------------------------------------------------------------------------

    def claim(self, job_id: int, owner: str, queue: str | None = None) -> Claim | None:
        """Take the lease and start: ``scheduled → claimed → running`` in one statement.

        None means this message must run nothing: the job is final, cancelled, leased by a
        live worker, not yet due, or unknown. The reason is logged, not raised, because a
        refused claim is the normal fate of a duplicate message. A store that stays
        unreachable for ``claim_patience_seconds`` raises ``StoreUnavailable``: the caller
        must then keep the message, since nothing was decided.
        """

        def attempt(repeated: bool) -> Claim | None:
            limited = self._limited_queue_of([job_id], queue)
            try:
                if limited is not None or self._tenant_capped([job_id]):
                    within = self._claim_within_limit([job_id], owner, limited, chunk=False)
                    return Claim(job=within[0], owner=owner) if within else None
                with self.connection.use() as conn:
                    return Claim(job=self._claim_and_start(conn, job_id, owner), owner=owner)
            except (TransitionRefused, JobNotFound) as exc:
                mine = self._own_earlier_claims([job_id], owner, JobStatus.RUNNING, repeated)
                if mine:
                    return mine[0]
                log.info("claim_refused", job_id=job_id, owner=owner, reason=str(exc))
                return None

        return self._claim_retried(attempt, what="claim")

    def _own_earlier_claims(
        self, job_ids: list[int], owner: str, status: JobStatus, repeated: bool
    ) -> list[Claim]:
        """After a retried claim: the jobs an earlier try of this very call claimed (it
        committed, its answer was lost). The owner is this process, so they are ours."""
        if not repeated:
            return []
        found: list[Claim] = []
        with self.connection.use() as conn:
            repo = JobsRepository(conn)
            for job_id in job_ids:
                try:
                    job = repo.get(job_id)
                except JobNotFound:
                    continue
                if job.status is status and job.lease_owner == owner:
                    log.info("claim_found_committed", job_id=job_id, attempt=job.attempt)
                    found.append(Claim(job=job, owner=owner))
        return found

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
        """``scheduled → claimed → running`` for every job of ``job_ids`` still claimable and
        due, in one statement: a chunk's jobs are started with it, each counting its attempt
        now (so a job that kills its worker is counted, and dead-lettered in the end, even
        when it was not first in its chunk)."""
        return guard.transition_many(
            conn,
            job_ids,
            [Step(JobStatus.CLAIMED), Step(JobStatus.RUNNING)],
            actor=owner,
            lease_owner=owner,
            lease_ttl_seconds=self.lease_ttl_seconds,
            require_due=True,
        )

    def claim_chunk(self, job_ids: list[int], owner: str, queue: str | None = None) -> list[Claim]:
        """Claim and start, in one statement, every job of a chunk message still claimable.

        Each job gets its own fencing token. A job whose handler never runs (the chunk was
        interrupted) is handed back with its attempt returned; if the worker dies instead,
        its lease runs out and the leader takes it back as ``lease_expired``, an attempt
        spent, as for the job that was running. Raises ``StoreUnavailable`` as ``claim`` does.
        """
        ids = sorted(set(job_ids))

        def attempt(repeated: bool) -> list[Claim]:
            limited = self._limited_queue_of(ids, queue)
            if limited is not None or self._tenant_capped(ids):
                jobs = self._claim_within_limit(ids, owner, limited, chunk=True)
            else:
                with self.connection.use() as conn:
                    jobs = self._claim_many(conn, ids, owner)
            claims = [Claim(job=job, owner=owner) for job in jobs]
            missing = sorted(set(ids) - {c.job_id for c in claims})
            return claims + self._own_earlier_claims(missing, owner, JobStatus.RUNNING, repeated)

        claims = self._claim_retried(attempt, what="claim_chunk")
        if len(claims) < len(ids):
            log.info("chunk_partly_claimed", owner=owner, asked=len(ids), claimed=len(claims))
        return sorted(claims, key=lambda c: c.job_id)

    # ---- adopted messages --------------------------------------------------------------------

    def adopt(
        self,
        job_type: str,
        payload: Any,
        celery_task_id: str,
        owner: str,
        *,
        tenant_id: str = "default",
        project_id: str = "default",
    ) -> Claim | None:
        """Record a job for a message sent by plain Celery, then claim it.

        The Celery task id is the job's idempotency key within its tenant, so a redelivery of
        the same message finds the same job (and its claim decides, as for any duplicate).
        """
        new = self._adopted_job(job_type, payload, celery_task_id, tenant_id, project_id)
        job = self._record_adopted(new, owner)
        if job is None:
            return None
        if job.status is not JobStatus.SCHEDULED:
            log.info("adopted_message_refused", job_id=job.id, status=job.status.value)
            return None
        return self.claim(job.id, owner)

    def adopt_poison(
        self,
        job_type: str,
        payload: Any,
        celery_task_id: str,
        owner: str,
        error: dict[str, Any],
        *,
        tenant_id: str = "default",
        project_id: str = "default",
    ) -> Job | None:
        """Record a plain producer's message that cannot run as a job, then dead-letter it, so
        what it carried is kept in Postgres rather than dropped with the message."""
        new = self._adopted_job(job_type, payload, celery_task_id, tenant_id, project_id)
        job = self._record_adopted(new, owner)
        return None if job is None else self.poison(job.id, owner, error)

    def find_adopted(self, celery_task_id: str, tenant_id: str = "default") -> Job | None:
        """The job recorded for a plain Celery message, if its message was ever seen."""
        with self.connection.use() as conn:
            found = JobsRepository(conn).find_by_idempotency_key(
                tenant_id, self._adopted_key(celery_task_id)
            )
        return found[0] if found else None

    @staticmethod
    def _adopted_key(celery_task_id: str) -> str:
        return f"celery:{celery_task_id}"

    def _adopted_job(
        self, job_type: str, payload: Any, celery_task_id: str, tenant_id: str, project_id: str
    ) -> NewJob:
        """The job a plain Celery message stands for, in the tenant and project it named."""
        return NewJob(
            type=job_type,
            payload=payload,
            tenant_id=tenant_id,
            project_id=project_id,
            idempotency_key=self._adopted_key(celery_task_id),
        )

    def _record_adopted(self, new: NewJob, owner: str) -> Job | None:
        """The job for a plain Celery message, created on first sight; keyed by its task id."""

        def once(repeated: bool) -> Job | None:
            with self.connection.transaction() as conn:
                job = guard.create_job(conn, new, schedule=True, actor=owner, reason="adopted")
                if job is not None:
                    return job
                found = JobsRepository(conn).find_by_idempotency_key(
                    new.tenant_id, new.idempotency_key or ""
                )
            return found[0] if found else None

        return self._claim_retried(once, what="adopt")

    def poison(self, job_id: int, owner: str, error: dict[str, Any]) -> Job | None:
        """Dead-letter a scheduled job whose message can never run a handler (undecodable, or
        no handler here): ``scheduled → claimed → running → failed`` in one statement, so the
        attempt is counted and the timeline shows which worker met the message. None when the
        job was not waiting to run (final, leased elsewhere): a stale message changes nothing.
        """

        def once() -> Job | None:
            try:
                with self.connection.use() as conn:
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

        return retrying(
            once, attempts=STORE_TRIES, deadline=self.write_deadline_seconds, what="poison"
        )

    # ---- outcomes ----------------------------------------------------------------------------

    def decide(self, claim: Claim, exc: BaseException, error: dict[str, Any]) -> Retry | Failed:
        """The one RetryPolicy decision for a failed attempt: another attempt, or the end."""
        policy = self.policy_for(claim.job.type, claim.job.retry_policy)
        decision = policy.decide(claim.job.budget_attempt, error_names(exc))
        if decision.retry:
            return Retry(error=error, countdown=decision.countdown, reason=decision.reason)
        return Failed(
            error=error, dead_letter_reason=decision.dead_letter or DeadLetterReason.NON_RETRYABLE
        )

    def record(
        self, claim: Claim, outcome: Outcome, publisher: Publisher | None = None
    ) -> Job | None:
        """The one store call of ``outcome`` (see ``jobengine.outcomes``); the job as written,
        or None when the fence refused it (the lease was lost, or the job moved on). A run's
        children the outcome released are published through ``publisher`` after commit."""
        match outcome:
            case Completed(result=result):
                return self.complete(claim, result, publisher)
            case Retry():
                return self.record_retry(claim, outcome)
            case Failed(error=error, dead_letter_reason=reason):
                return self.record_failure(claim, error, reason, publisher)
            case HandedBack(reason=reason):
                return self.give_back(claim, reason)

    def complete(self, claim: Claim, result: Any, publisher: Publisher | None = None) -> Job | None:
        return self._finish(
            claim,
            [Step(JobStatus.COMPLETED, COMPLETED_REASON)],
            result=result,
            publisher=publisher,
        )

    def complete_many(
        self, done: Sequence[tuple[Claim, Any]], publisher: Publisher | None = None
    ) -> dict[int, Job | None]:
        """``running → completed`` for many held jobs in one fenced statement (the batch of
        ``jobengine.completer``), retried like any outcome; each job maps to the job as written,
        or None when its fence refused it (its lease was lost, it was cancelled)."""
        if not done:
            return {}
        claims = {claim.job_id: claim for claim, _ in done}
        released: list[Released] = []

        def once(repeated: bool) -> dict[int, Job | None]:
            released.clear()
            with self.connection.use() as conn:
                moved = guard.finish_many(
                    conn,
                    held_of(done),
                    Step(JobStatus.COMPLETED, COMPLETED_REASON),
                    actor=done[0][0].owner,
                    released=released,
                )
            written: dict[int, Job | None] = dict.fromkeys(claims)
            written.update({job.id: job for job in moved})
            for job_id in [i for i, job in written.items() if job is None]:
                found = (
                    self._already_written(claims[job_id], JobStatus.COMPLETED) if repeated else None
                )
                written[job_id] = found
                if found is None:
                    log.warning(
                        "outcome_refused",
                        job_id=job_id,
                        attempt=claims[job_id].attempt,
                        status=JobStatus.COMPLETED.value,
                        reason="the lease was lost or the job moved on",
                    )
            return written

        written = self._retried(
            once, what="outcome:completed_many", deadline=self.write_deadline_seconds
        )
        self.publish_released(released, publisher)
        return written

    def record_retry(self, claim: Claim, outcome: Retry) -> Job | None:
        """``running → failed → scheduled`` in one transaction, with ``not_before`` set."""
        not_before = datetime.now(UTC) + timedelta(seconds=outcome.countdown)
        return self._finish(
            claim,
            [
                Step(JobStatus.FAILED, outcome.error.get("code", "HANDLER_ERROR")),
                Step(JobStatus.SCHEDULED, outcome.reason),
            ],
            error=outcome.error,
            not_before=not_before,
            details={"countdown": round(outcome.countdown, 3)},
        )

    def record_failure(
        self,
        claim: Claim,
        error: dict[str, Any],
        dead_letter: DeadLetterReason,
        publisher: Publisher | None = None,
    ) -> Job | None:
        """``running → failed`` for good: the same statement writes the dead letter."""
        return self._finish(
            claim,
            [Step(JobStatus.FAILED, error.get("code"))],
            error=error,
            dead_letter_reason=dead_letter,
            publisher=publisher,
        )

    def give_back(self, claim: Claim, reason: str) -> Job | None:
        """Back to ``scheduled``, its attempt returned, for a job whose handler never ran."""
        return self._finish(claim, [Step(JobStatus.SCHEDULED, reason)])

    def record_outcome_of_failure(
        self, claim: Claim, exc: BaseException, error: dict[str, Any]
    ) -> Job | None:
        """A failed attempt as the RetryPolicy decides: retried, or failed for good."""
        return self.record(claim, self.decide(claim, exc, error))

    def fail_lost_attempt(
        self, job_id: int, attempt: int, exc: BaseException, actor: str
    ) -> Job | None:
        """Record the failure of an attempt whose process is gone (killed at its hard time
        limit), from outside it. Each claim counts a new attempt, so ``attempt`` names the
        lease: the token read for it fences the write, and a job that moved on is left alone.
        """

        def read() -> Job:
            with self.connection.use() as conn:
                return JobsRepository(conn).get(job_id)

        job = retrying(
            read,
            attempts=STORE_TRIES,
            deadline=self.write_deadline_seconds,
            what="read_lost_attempt",
        )
        if job.status is not JobStatus.RUNNING or job.attempt != attempt:
            log.info("lost_attempt_already_moved", job_id=job_id, attempt=attempt)
            return None
        claim = Claim(job=job, owner=actor)
        return self.record_outcome_of_failure(claim, exc, describe_error(exc, ""))

    def cancel(
        self,
        job_id: int,
        *,
        actor: str,
        reason: str,
        origin: Origin | None = None,
        audit_unchanged: bool = True,
    ) -> Cancelled:
        """Cancel a job no attempt of ours holds (a revoke), as any request would."""
        return retrying(
            lambda: cancel_job(
                self.engine,
                job_id,
                actor=actor,
                reason=reason,
                origin=origin,
                audit_unchanged=audit_unchanged,
            ),
            attempts=STORE_TRIES,
            deadline=self.write_deadline_seconds,
            what="cancel",
        )

    def mark_dispatched(self, job_id: int) -> None:
        """Note that a message for the job was just published (its retry's)."""

        def once() -> None:
            with self.connection.use() as conn:
                LeaseRepository(conn).mark_dispatched([job_id])

        retrying(
            once, attempts=STORE_TRIES, deadline=self.write_deadline_seconds, what="mark_dispatched"
        )

    def report_progress(self, claim: Claim, progress: dict[str, Any]) -> bool:
        with self.connection.use() as conn:
            return LeaseRepository(conn).record_progress(claim.job_id, claim.token, progress)

    def spawn(self, claim: Claim, job: RunJobSpec, publisher: Publisher | None = None) -> int:
        """Add ``job`` to the run of the job ``claim`` holds (``runs.spawn``), in one
        transaction under its lease, retried like an outcome; published after commit."""

        def once(repeated: bool) -> tuple[Job, bool]:
            with (
                self.connection.transaction() as conn,
                # The spawned job's trace context: a producer span in the spawning attempt's.
                tracing.submitting(conn, "spawn", queue=None, jobs=1, actor=claim.owner),
            ):
                return spawn_into_run(
                    conn,
                    claim.job_id,
                    claim.token,
                    job,
                    actor=claim.owner,
                    validate_job=default_validator(conn),
                )

        spawned, created = self._retried(once, what="spawn", deadline=self.write_deadline_seconds)
        if created and spawned.status is JobStatus.SCHEDULED:
            self.publish_released([Released(spawned.tenant_id, dispatch_ref(spawned))], publisher)
        return spawned.id

    def leader_publishes(self, job: Job) -> bool:
        """Whether the leader, not this worker, publishes ``job`` (a retry, a run's released
        child): a fair-shared queue's or a capped tenant's take their turn with the others
        (``jobengine.quotas``). The cached copy alone while no queue or tenant has one."""
        return self._quotas().held_back(job.tenant_id, job.queue)

    def _quotas(self) -> Book:
        with self.connection.use() as conn:
            return book(conn)

    def publish_released(self, released: Sequence[Released], publisher: Publisher | None) -> None:
        """Publish a run's children that a committed outcome released, then mark them handed
        to the broker on this process's connection. Without a publisher, or when the broker
        fails, they wait unmarked and the leader's dispatcher publishes them; so do those
        the leader publishes in their turn (``leader_publishes``)."""
        if not released or publisher is None:
            return
        quotas = self._quotas()
        refs = [r.ref for r in released if not quotas.held_back(r.tenant_id, r.ref.queue)]
        unmarked: list[int] = []
        published = 0
        try:
            for group in chunked(refs, self.release_chunk_size):
                if len(group) == 1:
                    publisher.publish(group[0])
                else:
                    publisher.publish_chunk(group)
                unmarked.extend(ref.id for ref in group)
                published += len(group)
                if len(unmarked) >= MARK_RELEASED_EVERY:
                    self._mark_dispatched(unmarked)
                    unmarked = []
        except Exception as exc:  # any broker failure: the leader publishes the rest
            log.warning("released_publish_failed", jobs=len(refs) - published, error=str(exc))
        self._mark_dispatched(unmarked)

    def _mark_dispatched(self, ids: Sequence[int]) -> None:
        """Mark published jobs handed to the broker, a bounded group at a time: the marking
        locks their rows, and a worker claiming one of the first (already in the broker)
        waits for it to commit. A failure leaves them to the leader, which publishes again."""
        if not ids:
            return
        try:
            with self.connection.use() as conn:
                LeaseRepository(conn).mark_dispatched(ids)
        except JobEngineError as exc:
            log.warning("released_dispatch_not_marked", jobs=len(ids), error=str(exc))

    def _finish(
        self,
        claim: Claim,
        steps: list[Step],
        publisher: Publisher | None = None,
        **kwargs: Any,
    ) -> Job | None:
        """A fenced move of a job this worker holds, retried after transient errors."""
        target = steps[-1].to
        released: list[Released] = []

        def once(repeated: bool) -> Job | None:
            released.clear()
            try:
                with self.connection.use() as conn:
                    return guard.transition(
                        conn,
                        claim.job_id,
                        steps,
                        actor=claim.owner,
                        lease_token=claim.token,
                        released=released,
                        in_run=claim.job.run_id is not None,
                        **kwargs,
                    ).job
            except TransitionRefused as exc:
                done = self._already_written(claim, target) if repeated else None
                if done is not None:
                    return done
                log.warning(
                    "outcome_refused",
                    job_id=claim.job_id,
                    attempt=claim.attempt,
                    status=target.value,
                    reason=str(exc),
                )
                return None

        try:
            job = self._retried(
                once, what=f"outcome:{target.value}", deadline=self.write_deadline_seconds
            )
        except JobEngineError as exc:
            log.error(
                "outcome_not_recorded",
                job_id=claim.job_id,
                attempt=claim.attempt,
                status=target.value,
                error_code=exc.code,
                error=str(exc),
                transient=isinstance(exc, TRANSIENT),
            )
            raise
        self.publish_released(released, publisher)
        return job

    def _already_written(self, claim: Claim, target: JobStatus) -> Job | None:
        """The job, if an earlier try of this write committed before its answer was lost:
        the same lease token, and the state it was going to."""
        with self.connection.use() as conn:
            job = JobsRepository(conn).get(claim.job_id)
        if job.lease_token == claim.token and job.status is target:
            log.info(
                "outcome_found_committed",
                job_id=claim.job_id,
                attempt=claim.attempt,
                status=target.value,
            )
            return job
        return None
