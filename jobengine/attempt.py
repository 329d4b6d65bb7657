"""One attempt as one pipeline: claim → decode → run → decide once → record.

Single and chunked messages go through the same steps; a chunk only repeats ``run`` for each
of its jobs, starting each when its turn comes. The outcome (``jobengine.outcomes``) is decided
in one place and recorded by one store call, retried after transient store errors. The lease
of a job is held in the ``LeaseKeeper`` from its claim until its attempt ends, and released on
every way out: outcome recorded or not, handler raising anything, chunk interrupted.

Nothing here knows Celery: ``workers.tasks`` turns a message into a ``Delivery`` and an
attempt's ``Ran`` back into Celery's own terms (a result, ``Retry``, the handler's error).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog
from opentelemetry.trace import StatusCode

from jobengine import tracing
from jobengine.artifacts.attach import Attacher, Data
from jobengine.artifacts.errors import AttachRefused
from jobengine.artifacts.model import Artifact
from jobengine.chunk_report import ChunkReport
from jobengine.completer import Completer
from jobengine.context import JobContext
from jobengine.dispatch import Publisher, adopted_identity, is_chunk, parse_task_id
from jobengine.domain.job import Job
from jobengine.domain.status import JobStatus
from jobengine.errors import JobEngineError, PayloadInvalid
from jobengine.execution import Claim, Executor, describe_error
from jobengine.failures import PoisonMessage
from jobengine.lease import LeaseKeeper
from jobengine.outcomes import Completed, HandedBack, Outcome, Retry
from jobengine.producer import dispatch_ref
from jobengine.results import DEFAULT_RESULT_MAX_BYTES, checked_result
from jobengine.runs.service import parent_results
from jobengine.stopping import STOPPED_REASON, StopSwitch, WorkerStopping
from jobengine.stopping import switch as process_switch
from jobengine.store.jobs_repository import JobsRepository

log = structlog.get_logger("jobengine.attempt")

Handler = Callable[[JobContext], Any]

CHUNK_INTERRUPTED = "chunk interrupted before its handler ran"
_NOT_RETURNED = object()


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a message says: its task id names a job, a chunk, or (plain Celery) neither."""

    task_id: str
    job_type: str
    args: Sequence[Any] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    headers: Mapping[str, Any] = field(default_factory=dict)
    """The message's own headers; a plain producer names its tenant and project there."""

    def adopted_payload(self) -> Any:
        """What a plain Celery producer sent becomes the adopted job's payload."""
        if not self.args:
            return dict(self.kwargs)
        return {"args": list(self.args), "kwargs": dict(self.kwargs)}


@dataclass(frozen=True, slots=True)
class Ran:
    """How an attempt ended: its outcome, the handler's error behind it, and the job as
    recorded (None when the fence refused the write, the store could not be reached, or the
    completion waits in the ``Completer``'s buffer, ``recorded`` False)."""

    outcome: Outcome
    error: BaseException | None
    job: Job | None
    recorded: bool
    store_unreachable: bool = False
    """The outcome could not be written because the store could not be reached."""


def countdown_of(job: Job) -> float:
    """Seconds until a retried job is due, from the ``not_before`` its retry recorded."""
    if job.not_before is None:
        return 0.0
    return max(0.0, (job.not_before - job.updated_at).total_seconds())


class Attempts:
    """The pipeline of one worker process: its executor, its leases and its name."""

    def __init__(
        self,
        executor: Executor,
        keeper: LeaseKeeper,
        owner: str,
        *,
        eta_limit_seconds: float,
        completer: Completer | None = None,
        result_max_bytes: int = DEFAULT_RESULT_MAX_BYTES,
        attacher: Attacher | None = None,
        stop_switch: StopSwitch = process_switch,
    ) -> None:
        self.executor = executor
        self.keeper = keeper
        self.owner = owner
        self.eta_limit_seconds = eta_limit_seconds
        self.completer = completer
        """Completions go through it, batched, when given; without one each is written
        at once (one statement per completion)."""
        self.result_max_bytes = result_max_bytes
        """A handler's result over this, as JSON, fails its attempt (``jobengine.results``)."""
        self.attacher = attacher
        """Stores what handlers attach; without one ``ctx.attach`` refuses."""
        self.stop_switch = stop_switch
        """Set at the worker's shutdown bound: the running handler is interrupted and its job
        handed back, and a chunk runs none of its waiting jobs (``jobengine.stopping``)."""

    def claim(self, delivery: Delivery) -> list[Claim]:
        """The jobs this message may run, leased and held; empty means run nothing.

        Raises a retryable ``JobEngineError`` (``StoreUnavailable``, ...) when the store could
        not decide within the executor's patience: the caller must keep the message then.
        """
        try:
            claims = self._claim(delivery)
        except JobEngineError as exc:
            if exc.retryable:
                raise
            log.warning("claim_failed", task_id=delivery.task_id, error=str(exc))
            return []
        if self.completer is not None:
            self.completer.store_reached()
        # A retried claim takes a job leased to this process as its own earlier, committed
        # claim; one already held here is another thread's attempt (a duplicate message).
        running_here = self.keeper.held()
        for twin in [c for c in claims if c.job_id in running_here]:
            log.info("claim_already_running_here", job_id=twin.job_id, task_id=delivery.task_id)
        claims = [c for c in claims if c.job_id not in running_here]
        for held in claims:
            self.keeper.hold(held.job_id, held.token)
        return claims

    def _claim(self, delivery: Delivery) -> list[Claim]:
        if is_chunk(delivery.task_id):
            try:
                ids = [int(a) for a in delivery.args]
            except (TypeError, ValueError) as exc:
                log.warning("chunk_message_unreadable", task_id=delivery.task_id, error=str(exc))
                return []
            return self.executor.claim_chunk(ids, self.owner)
        parsed = parse_task_id(delivery.task_id)
        if parsed is not None:
            claim = self.executor.claim(parsed[0], self.owner)
        else:
            claim = self._adopt(delivery)
        return [] if claim is None else [claim]

    def _adopt(self, delivery: Delivery) -> Claim | None:
        """A plain Celery message becomes a job of the tenant and project its headers name; a
        header that names none properly is dead-lettered, never filed under ``default``."""
        payload = delivery.adopted_payload()
        try:
            tenant_id, project_id = adopted_identity(delivery.headers)
        except ValueError as exc:
            error = describe_error(PoisonMessage(str(exc)), "")
            self.executor.adopt_poison(
                delivery.job_type, payload, delivery.task_id, self.owner, error
            )
            return None
        return self.executor.adopt(
            delivery.job_type,
            payload,
            delivery.task_id,
            self.owner,
            tenant_id=tenant_id,
            project_id=project_id,
        )

    def context(self, claim: Claim, publisher: Publisher | None = None) -> JobContext:
        """The handler's view of its job; a payload its type's model cannot decode is poison.
        Jobs it spawns into its run are published through ``publisher``."""
        try:
            data = self.executor.types.get(claim.job.type).decode_payload(claim.job.payload)
        except PayloadInvalid as exc:
            raise PoisonMessage(exc.message) from None
        return JobContext(
            job_id=claim.job_id,
            type=claim.job.type,
            attempt=claim.attempt,
            payload=claim.job.payload,
            data=data,
            scheduled_for=claim.job.scheduled_for,
            lease_token=claim.token,
            _report=partial(self.executor.report_progress, claim),
            _still_held=partial(self.keeper.still_held, claim.job_id),
            _spawn=partial(self.executor.spawn, claim, publisher=publisher),
            _attach=None if self.attacher is None else partial(self._attach, claim),
            _parents=partial(self._parent_results, claim),
            _stopping=lambda: self.stop_switch.stopped,
        )

    def _parent_results(self, claim: Claim) -> dict[str, Any]:
        """Read when the handler first asks: a job outside a run has no parents to read."""
        if claim.job.run_id is None:
            return {}
        with self.executor.connection.use() as conn:
            return parent_results(conn, claim.job_id)

    def _attach(self, claim: Claim, name: str, data: Data, content_type: str | None) -> Artifact:
        """Refused before any byte is stored once the heartbeat has seen the lease lost; the
        fence of the row decides in every other case."""
        assert self.attacher is not None
        if not self.keeper.still_held(claim.job_id):
            raise AttachRefused(claim.job_id, claim.token, name)
        return self.attacher.attach(
            job_id=claim.job_id,
            lease_token=claim.token,
            name=name,
            data=data,
            content_type=content_type,
        )

    def run(self, claim: Claim, handler: Handler, publisher: Publisher) -> Ran:
        """Decode, run the handler, decide, record: one attempt of a running job, in its
        consumer span (``jobengine.tracing``)."""
        job = claim.job
        with tracing.processing(
            queue=job.queue,
            job_type=job.type,
            job_id=job.id,
            attempt=claim.attempt,
            traceparent=job.traceparent,
        ) as span:
            ran = self._run(claim, handler, publisher)
            span.set_attribute("jobengine.outcome", type(ran.outcome).__name__.lower())
            if ran.error is not None:
                span.record_exception(ran.error)
                span.set_status(StatusCode.ERROR, str(ran.error)[:200])
            return ran

    def _run(self, claim: Claim, handler: Handler, publisher: Publisher) -> Ran:
        error: BaseException | None = None
        try:
            try:
                context = self.context(claim, publisher)
                result = checked_result(self._call(handler, context), self.result_max_bytes)
                outcome: Outcome = Completed(result)
            except WorkerStopping:
                # The shutdown bound: not the handler's failure, so no attempt is spent.
                log.info("attempt_stopped_by_shutdown", job_id=claim.job_id, attempt=claim.attempt)
                outcome = HandedBack(STOPPED_REASON)
            except Exception as exc:
                error = exc
                outcome = self.executor.decide(claim, exc, describe_error(exc))
        finally:
            self.keeper.release(claim.job_id)
        return self._record(claim, outcome, error, publisher)

    def _call(self, handler: Handler, context: JobContext) -> Any:
        """The handler's call, interruptible by the shutdown bound until it returns: a stop
        that lands just after it returned is too late to matter, and its result stands."""
        returned: Any = _NOT_RETURNED
        try:
            with self.stop_switch.handler_running():
                returned = handler(context)
        except WorkerStopping:
            if returned is _NOT_RETURNED:
                raise
        return returned

    def run_chunk(
        self, claims: Sequence[Claim], handler: Handler, publisher: Publisher
    ) -> ChunkReport:
        """Run a chunk's jobs one after another; they were started with the claim.

        A job whose lease was found lost while it waited (cancelled, taken over) is skipped;
        its fence would refuse its outcome anyway. If the chunk is interrupted (an outcome the
        store could not take, the worker stopping at its shutdown bound), the jobs not yet run
        are released and handed back (``running → scheduled``, their attempts returned). The
        chunk's buffered completions are written before it returns, so its message is
        acknowledged only then. The report says how each job ended, for Celery's state of the
        chunk's task.
        """
        waiting = list(claims)
        report = ChunkReport(jobs=len(claims))
        try:
            while waiting:
                claim = waiting.pop(0)
                if not self.keeper.still_held(claim.job_id):
                    self.keeper.release(claim.job_id)
                    log.info("chunk_job_lost_before_its_turn", job_id=claim.job_id)
                    continue
                outcome = self.run(claim, handler, publisher)
                report.add(claim.job_id, outcome.outcome)
                if outcome.store_unreachable or (
                    self.completer is not None and self.completer.store_unreachable
                ):
                    log.warning("chunk_stopped_store_unreachable", jobs=len(waiting))
                    break
                if self.stop_switch.stopped:
                    log.info("chunk_stopped_by_shutdown", jobs=len(waiting))
                    break
        finally:
            self._hand_back(waiting, publisher)
            if self.completer is not None:
                self.completer.flush()
        return report

    def _hand_back(self, waiting: list[Claim], publisher: Publisher) -> None:
        """Release every waiting lease first, so no way out leaves one held, then give each
        back; when the store is unreachable the rest are left to the reaper, whose rescue
        returns them once their leases run out."""
        for claim in waiting:
            self.keeper.release(claim.job_id)
        reason = STOPPED_REASON if self.stop_switch.stopped else CHUNK_INTERRUPTED
        for n, claim in enumerate(waiting):
            try:
                self._record(claim, HandedBack(reason), None, publisher)
            except JobEngineError as exc:
                left = [c.job_id for c in waiting[n:]]
                log.warning("hand_back_failed", jobs=left, error=str(exc))
                if exc.retryable:
                    return

    def _record(
        self,
        claim: Claim,
        outcome: Outcome,
        error: BaseException | None,
        publisher: Publisher | None,
    ) -> Ran:
        if isinstance(outcome, Completed) and self.completer is not None:
            self.completer.add(claim, outcome.result, publisher)
            return Ran(outcome=outcome, error=error, job=None, recorded=False)
        try:
            with tracing.step("record", **{"jobengine.job.id": claim.job_id}):
                job = self.executor.record(claim, outcome, publisher)
        except JobEngineError as exc:
            if isinstance(outcome, HandedBack):
                raise
            # Logged by the executor; the lease runs out and the reaper decides.
            return Ran(
                outcome=outcome,
                error=error,
                job=None,
                recorded=False,
                store_unreachable=exc.retryable,
            )
        if isinstance(outcome, Retry) and job is not None and publisher is not None:
            self.publish_retry(job, outcome.countdown, publisher)
        if isinstance(outcome, HandedBack) and job is not None and publisher is not None:
            self.publish_retry(job, 0.0, publisher)  # due now, for any other worker
        return Ran(outcome=outcome, error=error, job=job, recorded=True)

    def lost_attempt(
        self, job_id: int, attempt: int, exc: BaseException, publisher: Publisher
    ) -> Job | None:
        """An attempt whose process was killed (hard time limit): recorded from outside it,
        as the RetryPolicy decides, its retry published like any other."""
        job = self.executor.fail_lost_attempt(job_id, attempt, exc, f"{self.owner}:time-limit")
        if job is not None:
            self.publish_retry(job, countdown_of(job), publisher)
        return job

    def hand_back_abandoned(
        self, job_id: int, lease_owner: str, publisher: Publisher | None
    ) -> Job | None:
        """A job whose pool process was killed at the shutdown bound (its handler would not
        stop): handed back from outside that process, fenced by the token read for it, so a
        job that moved on (finished, taken over by another worker) is left alone."""
        with self.executor.connection.use() as conn:
            job = JobsRepository(conn).get(job_id)
        if job.status is not JobStatus.RUNNING or job.lease_owner != lease_owner:
            log.info("abandoned_job_already_moved", job_id=job_id, status=job.status.value)
            return None
        claim = Claim(job=job, owner=f"{self.owner}:shutdown")
        return self._record(claim, HandedBack(STOPPED_REASON), None, publisher).job

    def publish_retry(self, job: Job, countdown: float, publisher: Publisher) -> None:
        """Publish a retry once its ``running → failed → scheduled`` has committed, so the
        message can never arrive before its job is claimable. A wait beyond the ETA limit gets
        no message: the job waits in Postgres and the leader publishes it when due, so Redis
        never redelivers it early or twice. A retry of a fair-shared queue's or a capped
        tenant's job gets none either: the leader publishes it when due, in its turn."""
        if job.status is not JobStatus.SCHEDULED or countdown > self.eta_limit_seconds:
            return
        if self.executor.leader_publishes(job):
            return
        try:
            publisher.publish(dispatch_ref(job), countdown=countdown)
        except Exception as exc:  # any broker failure: the leader publishes it instead
            log.warning("retry_publish_failed", job_id=job.id, error=str(exc))
            return
        try:
            self.executor.mark_dispatched(job.id)
        except JobEngineError as exc:
            log.warning("retry_dispatch_not_marked", job_id=job.id, error=str(exc))
