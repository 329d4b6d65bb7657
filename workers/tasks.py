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

from jobengine.attempt import Delivery, Ran
from jobengine.dispatch import (
    PROJECT_HEADER,
    TASK_PREFIX,
    TENANT_HEADER,
    CeleryPublisher,
    is_chunk,
)
from jobengine.errors import JobEngineError
from jobengine.execution import Claim
from jobengine.outcomes import Completed
from jobengine.outcomes import Retry as RetryOutcome
from workers.registry import HANDLERS, Handler
from workers.runtime import runtime

log = structlog.get_logger("workers.tasks")


class JobTask(Task):  # type: ignore[misc]
    """Base of every job task; ``job_type`` is set per task."""

    job_type = ""
    typing = False  # payloads of adopted messages arrive as any args/kwargs

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


def _celery_outcome(ran: Ran) -> Any:
    """The attempt in Celery's terms, so Flower and events show what Postgres recorded."""
    if isinstance(ran.outcome, Completed):
        return ran.outcome.result
    assert ran.error is not None, "only a completed attempt has no error"
    if isinstance(ran.outcome, RetryOutcome):
        raise Retry(exc=ran.error, when=ran.outcome.countdown) from ran.error
    raise ran.error


def _make_body(handler: Handler) -> Any:
    def run(self: JobTask, *args: Any, **kwargs: Any) -> Any:
        attempts = runtime().attempts
        claims: list[Claim] = self.request.jobengine_claims
        publisher = CeleryPublisher(self.app)
        if is_chunk(self.request.id):
            return attempts.run_chunk(claims, handler, publisher)
        return _celery_outcome(attempts.run(claims[0], handler, publisher))

    return run


def register_tasks(app: Celery) -> None:
    """A ``jobs.<type>`` task for every registered handler."""
    for job_type, handler in sorted(HANDLERS.items()):
        name = f"{TASK_PREFIX}{job_type}"
        if name in app.tasks:
            continue
        app.task(name=name, base=JobTask, bind=True, job_type=job_type)(_make_body(handler))
