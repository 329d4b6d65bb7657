"""A message whose claim could not reach Postgres goes straight back to the broker.

Nothing was decided, so the message must not be acknowledged as done (its job would wait for the
lost-dispatch sweep). Rejecting it with requeue puts it back at the head of its list, where this
same process, free again, tends to take it at once: a worker that can reach Redis but not
Postgres (a partition, a host whose database route is down) would hold the fleet's messages
one after another. Instead a copy is published to the type's queue, where any worker may take
it now, and this process backs off (capped, jittered) before it takes another message; its
claims then try once each until one reaches the store (``Executor``). Only when the copy
cannot be published either is the message rejected with requeue, as the last way to keep it.
"""

from __future__ import annotations

import time
from typing import Any, NoReturn

import structlog
from celery.exceptions import Ignore, Reject

from jobengine.dispatch import PROJECT_HEADER, TENANT_HEADER, broker_queue
from jobengine.errors import JobEngineError
from jobengine.store.backoff import Backoff

log = structlog.get_logger("workers.deferral")

BASE_BACKOFF_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 5.0


class ClaimDeferral:
    """This process's backoff while its claims cannot reach the store."""

    def __init__(self, cap_seconds: float = MAX_BACKOFF_SECONDS) -> None:
        self._backoff = Backoff(BASE_BACKOFF_SECONDS, cap_seconds)

    def reached_store(self) -> None:
        self._backoff.reset()

    def defer(self, task: Any, exc: JobEngineError) -> NoReturn:
        """Hand the message in ``task.request`` back to the broker, wait, and end the task
        without running anything (``Ignore`` acknowledges the original, its copy is queued)."""
        request = task.request
        hard, soft = getattr(request, "timelimit", None) or (None, None)
        headers = {
            h: getattr(request, h) for h in (TENANT_HEADER, PROJECT_HEADER) if hasattr(request, h)
        }
        try:
            task.app.send_task(
                task.name,
                args=list(request.args or ()),
                kwargs=dict(request.kwargs or {}),
                task_id=request.id,
                queue=broker_queue(task.job_type),
                priority=(request.delivery_info or {}).get("priority"),
                headers=headers or None,
                time_limit=hard,
                soft_time_limit=soft,
            )
        except Exception as publish_error:  # the broker is away too: keep the original
            log.warning(
                "claim_deferred_store_unreachable",
                task_id=request.id,
                error=str(exc),
                requeued=True,
                publish_error=str(publish_error),
            )
            raise Reject(f"{exc.code}: {exc.message}", requeue=True) from None
        wait = self._backoff.next()
        log.warning(
            "claim_deferred_store_unreachable",
            task_id=request.id,
            error=str(exc),
            handed_back=True,
            backoff_seconds=round(wait, 2),
        )
        time.sleep(wait)
        raise Ignore()
