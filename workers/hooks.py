"""Celery signals that arrive outside a task's body, turned into the engine's calls.

An attempt's own outcome is decided and recorded by the pipeline (``jobengine.attempt``), in
the body; what is left for signals happens in the worker's main process, where no attempt is
running: the hard time limit (the pool process was killed, so its attempt is recorded from
here) and a revoke (from Flower or ``celery control revoke``), which cancels the job as the
user Flower names (``jobengine.revoke_origins``), else as ``celery:revoke``. A pool
process that exits writes its buffered completions first (``jobengine.completer``).
Receivers take ``**kwargs`` as Celery asks. Celery swallows what a receiver raises (it only
logs it), so each receiver logs its own failures with the job's fields.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import redis
import structlog
from celery import signals
from celery.exceptions import TimeLimitExceeded

from jobengine import revoke_origins, tracing
from jobengine.audit.origin import Origin
from jobengine.cancellation import JobAlreadyFinal
from jobengine.dispatch import (
    TASK_PREFIX,
    TENANT_HEADER,
    CeleryPublisher,
    adopted_identity,
    is_chunk,
    parse_task_id,
)
from jobengine.errors import JobEngineError, JobNotFound
from jobengine.redis_clients import broker_client
from workers.runtime import runtime, started_here, urls

log = structlog.get_logger("workers.hooks")

REVOKE_ACTOR = "celery:revoke"
REVOKE_ORIGIN = Origin(actor=REVOKE_ACTOR, surface="flower")
"""A revoke that left no note of its sender (``celery control revoke``, a Flower not run by
``jobengine flower``) is filed as the revoke itself, under the surface that sends most. One
that finds its job already cancelled is the echo of a cancel that was filed where it was
asked (REST, the CLI and the console revoke a running job's task), so it files nothing."""
ORIGIN_READ_TIMEOUT_SECONDS = 2.0


@cache
def _broker() -> redis.Redis:
    return broker_client(
        urls()[1],
        sentinel_master=runtime().settings.broker_sentinel_master,
        timeout=ORIGIN_READ_TIMEOUT_SECONDS,
    )


def record_hard_time_limit(
    sender: Any = None, exception: BaseException | None = None, **kwargs: Any
) -> None:
    """The pool process running the job was killed at its hard limit; Celery tells the main
    process, which records the attempt's failure (TIMEOUT) and, by policy, its retry."""
    if not isinstance(exception, TimeLimitExceeded):
        return
    parsed = parse_task_id(kwargs.get("task_id"))
    if parsed is None:
        return
    try:
        runtime().attempts.lost_attempt(
            parsed[0], parsed[1], exception, CeleryPublisher(sender.app)
        )
    except JobEngineError as error:
        log.error("timeout_not_recorded", job_id=parsed[0], attempt=parsed[1], error=str(error))


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
    reason = "revoked and terminated" if terminated else "revoked"
    sender_origin = revoke_origins.take(_broker(), task_id) if task_id else None
    if is_chunk(task_id):
        for chunk_job in getattr(request, "args", None) or ():
            _cancel(int(chunk_job), reason, sender_origin)
        return
    parsed = parse_task_id(task_id)
    job_id = parsed[0] if parsed else None
    if job_id is None and task_id:
        try:
            adopted = runtime().executor.find_adopted(task_id, _adopted_tenant(request))
        except JobEngineError as exc:
            log.error("revoke_not_recorded", task_id=task_id, error=str(exc))
            return
        job_id = adopted.id if adopted else None
    if job_id is None:
        return
    _cancel(job_id, reason, sender_origin)


def _adopted_tenant(request: Any) -> str:
    """The tenant a plain message was adopted under (``default`` if it named none properly)."""
    try:
        return adopted_identity({TENANT_HEADER: getattr(request, TENANT_HEADER, None)})[0]
    except ValueError:
        return "default"


def _cancel(job_id: int, reason: str, sender: Origin | None) -> None:
    """Cancel in Postgres as ``sender`` (else as the revoke); a job already final (or gone) is
    left as it is, and filed only when a named sender asked for it."""
    origin = sender or REVOKE_ORIGIN
    try:
        cancelled = runtime().executor.cancel(
            job_id,
            actor=origin.actor,
            reason=reason,
            origin=origin,
            audit_unchanged=sender is not None,
        )
        if not cancelled.changed:
            log.info("revoke_of_cancelled_job", job_id=job_id, actor=origin.actor)
    except (JobAlreadyFinal, JobNotFound) as exc:
        log.info("revoke_ignored", job_id=job_id, reason=str(exc))
    except JobEngineError as exc:
        log.error("revoke_not_recorded", job_id=job_id, error=str(exc))


def flush_completions(**kwargs: Any) -> None:
    """A pool process on its way out (a warm shutdown, max tasks per child) writes the
    completions it buffered, so only a process that dies unasked leaves any unwritten."""
    if started_here():
        runtime().completer.flush()
        tracing.flush()  # a pool process may end without running exit handlers


signals.worker_process_shutdown.connect(flush_completions, weak=False)
signals.task_failure.connect(record_hard_time_limit, weak=False)
signals.task_revoked.connect(record_revoke, weak=False)
