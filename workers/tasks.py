"""Thin Celery tasks: one per job type, named ``jobs.<type>``, each a door to the pipeline.

``before_start`` claims (``jobengine.attempt``) and is the one place a message is refused:
``Ignore`` when it may run nothing (acknowledged); when Postgres could not be reached to decide,
the message goes back to the broker for any worker to take (``workers.deferral``) and this
process backs off, so it is never lost and never held by a worker cut off from Postgres. The
body runs the attempt, whose outcome is decided and recorded in the pipeline, then tells
Celery the same: the result, Celery's ``Retry``, or the handler's error.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Celery, Task
from celery.exceptions import Ignore, Retry
from celery.utils.saferepr import saferepr

from jobengine.attempt import Delivery, Ran
from jobengine.chunk_report import ChunkReport
from jobengine.dispatch import (
    PROJECT_HEADER,
    TASK_PREFIX,
    TENANT_HEADER,
    CeleryPublisher,
    is_chunk,
    parse_task_id,
)
from jobengine.errors import JobEngineError
from jobengine.execution import Claim
from jobengine.outcomes import Completed, HandedBack
from jobengine.outcomes import Retry as RetryOutcome
from workers.registry import HANDLERS, Handler
from workers.runtime import runtime

log = structlog.get_logger("workers.tasks")

ADOPTED_JOB_FIELD = "jobengine_job_id"
"""The key Flower shows in an adopted task's kwargs: the job the message became."""


class ChunkJobsFailed(Exception):
    """A chunk in which some job failed: its task ends FAILURE, with the report as message.

    Raised after every outcome of the chunk is recorded (its completions flushed), so Celery's
    failure touches nothing in Postgres: the ``task_failure`` hook acts only on a hard time
    limit, and the message is acknowledged as for any failed task
    (``task_acks_on_failure_or_timeout``), never redelivered.
    """


class JobTask(Task):  # type: ignore[misc]
    """Base of every job task; ``job_type`` is set per task."""

    job_type = ""
    typing = False  # payloads of adopted messages arrive as any args/kwargs
    throws = (ChunkJobsFailed,)  # an expected outcome: logged without a traceback

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        self.request.jobengine_claims = []
        delivery = Delivery(
            task_id=task_id or "",
            job_type=self.job_type,
            args=tuple(args or ()),
            kwargs=dict(kwargs or {}),
            headers={
                header: getattr(self.request, header)
                for header in (TENANT_HEADER, PROJECT_HEADER)
                if getattr(self.request, header, None) is not None
            },
        )
        rt = runtime()
        try:
            claims = rt.attempts.claim(delivery)
        except JobEngineError as exc:
            rt.deferral.defer(self, exc)  # nothing was decided: the message goes back
        rt.deferral.reached_store()
        if not claims:
            raise Ignore()
        self.request.jobengine_claims = claims
        if parse_task_id(task_id) is None and not is_chunk(task_id):
            self._show_adopted_job(claims[0].job_id, kwargs)

    def _show_adopted_job(self, job_id: int, kwargs: Any) -> None:
        """A plain Celery message, adopted as a job: tell Flower which job it became.

        Flower shows a task's name, args, kwargs and result from its events, none of which
        carries our job id for a task id a plain producer chose. A second ``task-started``
        event (same state, so nothing else changes) adds it to the kwargs Flower shows. It is
        sent whether or not the worker runs with task events (``-E`` is not visible from the
        pool process): adoption is rare, and an event nobody consumes is dropped by the broker.
        """
        shown = {**dict(kwargs or {}), ADOPTED_JOB_FIELD: job_id}
        try:
            self.send_event("task-started", kwargs=saferepr(shown), jobengine_job_id=job_id)
        except Exception as exc:  # an event is a courtesy; the job runs without it
            log.warning("adopted_event_not_sent", job_id=job_id, error=str(exc))


def _celery_outcome(ran: Ran) -> Any:
    """The attempt in Celery's terms, so Flower and events show what Postgres recorded."""
    if isinstance(ran.outcome, Completed):
        return ran.outcome.result
    if isinstance(ran.outcome, HandedBack):
        raise Ignore()  # stopped by the shutdown bound; its job waits for another worker
    assert ran.error is not None, "only a completed attempt has no error"
    if isinstance(ran.outcome, RetryOutcome):
        raise Retry(exc=ran.error, when=ran.outcome.countdown) from ran.error
    raise ran.error


def _chunk_outcome(report: ChunkReport) -> dict[str, Any]:
    """A chunk's report in Celery's terms: its result, or FAILURE when any job failed."""
    if report.failed:
        raise ChunkJobsFailed(report.as_result())
    return report.as_result()


def _make_body(handler: Handler) -> Any:
    def run(self: JobTask, *args: Any, **kwargs: Any) -> Any:
        attempts = runtime().attempts
        claims: list[Claim] = self.request.jobengine_claims
        publisher = CeleryPublisher(self.app)
        if is_chunk(self.request.id):
            return _chunk_outcome(attempts.run_chunk(claims, handler, publisher))
        return _celery_outcome(attempts.run(claims[0], handler, publisher))

    return run


def register_tasks(app: Celery) -> None:
    """A ``jobs.<type>`` task for every registered handler."""
    for job_type, handler in sorted(HANDLERS.items()):
        name = f"{TASK_PREFIX}{job_type}"
        if name in app.tasks:
            continue
        app.task(name=name, base=JobTask, bind=True, job_type=job_type)(_make_body(handler))
