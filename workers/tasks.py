"""Thin Celery tasks: one per job type, named ``jobs.<type>``.

A task decodes nothing and decides little: the claim was made by the ``task_prerun`` hook,
``before_start`` vetoes a message whose claim failed (the one place a message is refused),
and the body runs the handler, asking the job's RetryPolicy when it raises. Outcomes are
recorded by the hooks in ``workers.hooks``.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import structlog
from celery import Celery, Task
from celery.exceptions import Ignore, Retry

from jobengine.context import JobContext
from jobengine.dispatch import TASK_PREFIX, CeleryPublisher, task_id_for
from jobengine.domain.job import Job
from jobengine.domain.status import JobStatus
from jobengine.errors import PayloadInvalid
from jobengine.execution import Claim, describe_error
from jobengine.failures import NonRetryableError, PoisonMessage
from jobengine.job_types import registry
from jobengine.producer import dispatch_ref
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import LeaseRepository
from workers.registry import HANDLERS, Handler
from workers.runtime import runtime

log = structlog.get_logger("workers.tasks")


class JobTask(Task):  # type: ignore[misc]
    """Base of every job task; ``job_type`` is set per task."""

    job_type = ""
    typing = False  # payloads of adopted messages arrive as any args/kwargs

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        claimed = getattr(self.request, "jobengine_claim", None) or getattr(
            self.request, "jobengine_chunk", None
        )
        if not claimed:
            raise Ignore()


def _context(claim: Claim) -> JobContext:
    """The handler's view of its job; a payload its type's model cannot decode is poison."""
    rt = runtime()
    try:
        data = registry.get(claim.job.type).decode_payload(claim.job.payload)
    except PayloadInvalid as exc:
        raise PoisonMessage(exc.message) from None
    return JobContext(
        job_id=claim.job_id,
        type=claim.job.type,
        attempt=claim.attempt,
        payload=claim.job.payload,
        data=data,
        lease_token=claim.token,
        _report=partial(rt.executor.report_progress, claim),
        _still_held=partial(rt.keeper.still_held, claim.job_id),
    )


def _checked_result(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NonRetryableError(f"handler returned a result that is not JSON: {exc}") from exc
    return value


def _retry_for(task: JobTask, claim: Claim, exc: Exception) -> Retry | None:
    """Celery's own retry for a failed attempt, if the RetryPolicy grants one.

    The retry message is built here but published by the ``task_retry`` hook only after
    ``running → failed → scheduled`` has committed, so it can never arrive before its job is
    claimable. Waits longer than the ETA limit get no message at all: the job waits in Postgres
    and the reaper publishes it when due, so Redis never redelivers it early or twice.
    """
    rt = runtime()
    decision = rt.executor.decide_retry(claim, exc)
    if not decision.retry:
        return None
    signature = None
    if decision.countdown <= rt.settings.eta_limit_seconds:
        signature = task.signature_from_request(
            task.request,
            countdown=decision.countdown,
            retries=task.request.retries + 1,
            task_id=task_id_for(claim.job_id, claim.attempt + 1),
        )
    retry = Retry(exc=exc, when=decision.countdown, sig=signature)
    retry.jobengine_decision = decision
    return retry


def _countdown_of(job: Job) -> float:
    """Seconds until a retried job is due, from the ``not_before`` its retry recorded."""
    if job.not_before is None:
        return 0.0
    return max(0.0, (job.not_before - job.updated_at).total_seconds())


def publish_retry(app: Celery, job: Job, countdown: float | None = None) -> None:
    """Publish a retry recorded outside Celery's own retry (chunks, hard time limits)."""
    rt = runtime()
    countdown = _countdown_of(job) if countdown is None else countdown
    if job.status is not JobStatus.SCHEDULED or countdown > rt.settings.eta_limit_seconds:
        return  # waits in Postgres; the leader publishes it when due
    try:
        CeleryPublisher(app).publish(dispatch_ref(job), countdown=countdown)
    except Exception as publish_error:
        log.warning("retry_publish_failed", job_id=job.id, error=str(publish_error))
        return
    with transaction(rt.executor.engine) as conn:
        LeaseRepository(conn).mark_dispatched([job.id])


def _run_in_chunk(task: JobTask, handler: Handler, claim: Claim) -> None:
    """One job of a chunk, with the outcomes the hooks record for a job of its own."""
    rt = runtime()
    try:
        result = _checked_result(handler(_context(claim)))
    except Exception as exc:
        rt.keeper.release(claim.job_id)
        job = rt.executor.record_outcome_of_failure(claim, exc, describe_error(exc))
        if job is not None and job.status is JobStatus.SCHEDULED:
            publish_retry(task.app, job, _countdown_of(job))
        return
    rt.keeper.release(claim.job_id)
    rt.executor.complete(claim, result)


def _run_chunk(task: JobTask, handler: Handler, claims: list[Claim]) -> dict[str, int]:
    """Run a chunk's jobs one after another, each started only when its turn comes.

    A job cancelled or taken over while it waited is skipped. If the chunk is interrupted, the
    jobs not yet started are handed back (``claimed → scheduled``) for the leader to publish.
    """
    rt = runtime()
    waiting = list(claims)
    ran = 0
    try:
        while waiting:
            claim = waiting.pop(0)
            started = rt.executor.start(claim)
            if started is None:
                rt.keeper.release(claim.job_id)
                continue
            _run_in_chunk(task, handler, started)
            ran += 1
    finally:
        for claim in waiting:
            rt.keeper.release(claim.job_id)
            rt.executor.give_back(claim, "chunk interrupted before start")
    return {"jobs": len(claims), "ran": ran}


def _make_body(handler: Handler) -> Any:
    def run(self: JobTask, *args: Any, **kwargs: Any) -> Any:
        chunk: list[Claim] | None = getattr(self.request, "jobengine_chunk", None)
        if chunk:
            return _run_chunk(self, handler, chunk)
        claim: Claim = self.request.jobengine_claim
        try:
            return _checked_result(handler(_context(claim)))
        except Exception as exc:
            retry = _retry_for(self, claim, exc)
            if retry is None:
                raise
            raise retry from exc

    return run


def register_tasks(app: Celery) -> None:
    """A ``jobs.<type>`` task for every registered handler."""
    for job_type, handler in sorted(HANDLERS.items()):
        name = f"{TASK_PREFIX}{job_type}"
        if name in app.tasks:
            continue
        app.task(name=name, base=JobTask, bind=True, job_type=job_type)(_make_body(handler))
