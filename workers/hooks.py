"""Celery's signals drive the state machine: every outcome is recorded through the guard.

Receivers take ``**kwargs`` as Celery asks. Celery swallows what a receiver raises (it only
logs it), so each receiver logs its own failures with the job's fields; a hook that could not
record leaves the job leased, and the reaper takes it back when the lease runs out.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import signals
from celery.exceptions import TimeLimitExceeded

from jobengine.cancellation import JobAlreadyFinal, cancel_job
from jobengine.dispatch import TASK_PREFIX, is_chunk, parse_task_id
from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.errors import JobEngineError, JobNotFound
from jobengine.execution import Claim, describe_error
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import JobsRepository, LeaseRepository
from workers.runtime import runtime
from workers.tasks import JobTask, publish_retry

log = structlog.get_logger("workers.hooks")


def _payload_of(args: Any, kwargs: Any) -> Any:
    """What a plain Celery producer sent becomes the adopted job's payload."""
    if not args:
        return dict(kwargs or {})
    return {"args": list(args), "kwargs": dict(kwargs or {})}


def claim_job(task: Any = None, task_id: str | None = None, **kwargs: Any) -> None:
    if not isinstance(task, JobTask):
        return
    task.request.jobengine_claim = None
    task.request.jobengine_chunk = None
    rt = runtime()
    if is_chunk(task_id):
        try:
            ids = [int(a) for a in kwargs.get("args") or ()]
            claims = rt.executor.claim_chunk(ids, rt.owner, _queue_of(task))
        except (JobEngineError, TypeError, ValueError) as exc:
            log.warning("chunk_claim_failed", task_id=task_id, error=str(exc))
            return
        for held in claims:
            rt.keeper.hold(held.job_id, held.token)
        task.request.jobengine_chunk = claims or None
        return
    parsed = parse_task_id(task_id)
    try:
        if parsed is not None:
            claim = rt.executor.claim(parsed[0], rt.owner, _queue_of(task))
        else:
            payload = _payload_of(kwargs.get("args"), kwargs.get("kwargs"))
            claim = rt.executor.adopt(task.job_type, payload, task_id or "", rt.owner)
    except JobEngineError as exc:
        log.warning("claim_failed", task_id=task_id, error=str(exc))
        return
    if claim is None:
        return
    rt.keeper.hold(claim.job_id, claim.token)
    task.request.jobengine_claim = claim
    log.debug("job_started", job_id=claim.job_id, attempt=claim.attempt, status="running")


def _queue_of(task: Any) -> str | None:
    """The queue the message came from (our publisher routes by queue name)."""
    info = getattr(task.request, "delivery_info", None) or {}
    queue = info.get("routing_key")
    return str(queue) if queue else None


def _claim_of(request: Any) -> Claim | None:
    return getattr(request, "jobengine_claim", None)


def record_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    claim = _claim_of(getattr(sender, "request", None))
    if claim is None:
        return
    rt = runtime()
    rt.keeper.release(claim.job_id)
    try:
        rt.executor.complete(claim, result)
    except JobEngineError as exc:
        log.error(
            "success_not_recorded", job_id=claim.job_id, attempt=claim.attempt, error=str(exc)
        )


def _record_hard_time_limit(task: Any, task_id: str | None, exc: TimeLimitExceeded) -> None:
    """The pool process running the job was killed at its hard limit; Celery tells the main
    process, which records the attempt's failure (TIMEOUT) and, by policy, its retry."""
    parsed = parse_task_id(task_id)
    if parsed is None:
        return
    rt = runtime()
    try:
        job = rt.executor.fail_lost_attempt(parsed[0], parsed[1], exc, f"{rt.owner}:time-limit")
    except JobEngineError as error:
        log.error("timeout_not_recorded", job_id=parsed[0], attempt=parsed[1], error=str(error))
        return
    if job is not None:
        publish_retry(task.app, job)


def record_failure(
    sender: Any = None, exception: BaseException | None = None, einfo: Any = None, **kwargs: Any
) -> None:
    claim = _claim_of(getattr(sender, "request", None))
    if claim is None and isinstance(exception, TimeLimitExceeded):
        _record_hard_time_limit(sender, kwargs.get("task_id"), exception)
        return
    if claim is None or exception is None:
        return
    rt = runtime()
    rt.keeper.release(claim.job_id)
    error = describe_error(exception, str(einfo) if einfo is not None else None)
    decision = rt.executor.decide_retry(claim, exception)
    try:
        rt.executor.record_failure(
            claim, error, decision.dead_letter or DeadLetterReason.NON_RETRYABLE
        )
    except JobEngineError as exc:
        log.error(
            "failure_not_recorded", job_id=claim.job_id, attempt=claim.attempt, error=str(exc)
        )


def record_retry(request: Any = None, reason: Any = None, einfo: Any = None, **_: Any) -> None:
    claim = _claim_of(request)
    decision = getattr(reason, "jobengine_decision", None)
    if claim is None or decision is None:
        return
    rt = runtime()
    rt.keeper.release(claim.job_id)
    cause = getattr(reason, "exc", None) or reason
    error = describe_error(cause, str(einfo) if einfo is not None else None)
    try:
        job = rt.executor.record_retry(claim, error, decision)
    except JobEngineError as exc:
        log.error("retry_not_recorded", job_id=claim.job_id, attempt=claim.attempt, error=str(exc))
        return
    signature = getattr(reason, "sig", None)
    if job is None or signature is None:
        return
    try:
        signature.apply_async()
    except Exception as exc:
        log.warning("retry_publish_failed", job_id=claim.job_id, error=str(exc))
        return
    with transaction(rt.executor.engine) as conn:
        LeaseRepository(conn).mark_dispatched([claim.job_id])


def record_revoke(
    sender: Any = None, request: Any = None, terminated: bool = False, **_: Any
) -> None:
    """A revoke (from Flower or ``celery control revoke``) cancels the job in Postgres too.

    Celery sends this in the worker's main process, with the task as ``sender`` and the
    request's context as ``request``.
    """
    name = getattr(sender, "name", None) or getattr(request, "task", None) or ""
    if not name.startswith(TASK_PREFIX):
        return
    task_id = getattr(request, "id", None)
    rt = runtime()
    reason = "revoked and terminated" if terminated else "revoked"
    if is_chunk(task_id):
        for chunk_job in getattr(request, "args", None) or ():
            _cancel(rt.executor.engine, int(chunk_job), reason)
        return
    parsed = parse_task_id(task_id)
    job_id = parsed[0] if parsed else None
    if job_id is None and task_id:
        with transaction(rt.executor.engine) as conn:
            found = JobsRepository(conn).find_by_idempotency_key("default", f"celery:{task_id}")
        job_id = found[0].id if found else None
    if job_id is None:
        return
    _cancel(rt.executor.engine, job_id, reason)


def _cancel(engine: Any, job_id: int, reason: str) -> None:
    """Cancel in Postgres; a job already final (or gone) is left as it is."""
    try:
        cancel_job(engine, job_id, actor="celery:revoke", reason=reason)
    except (JobAlreadyFinal, JobNotFound) as exc:
        log.info("revoke_ignored", job_id=job_id, reason=str(exc))
    except JobEngineError as exc:
        log.error("revoke_not_recorded", job_id=job_id, error=str(exc))


signals.task_prerun.connect(claim_job, weak=False)
signals.task_success.connect(record_success, weak=False)
signals.task_failure.connect(record_failure, weak=False)
signals.task_retry.connect(record_retry, weak=False)
signals.task_revoked.connect(record_revoke, weak=False)
