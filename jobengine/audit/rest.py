"""The HTTP surfaces' side of the audit: who a request is, and its refusals.

``origin_of`` names the key a request authenticated with (``auth.authenticated`` and the
console's ``current_key`` leave it on ``request.state``), the surface (``console`` under
``/console``, else ``rest``) and the peer address. ``install`` wraps the app's error handlers
so that a refused audited act (missing scope, another tenant's id, a validation failure, a
conflict) is filed as refused before the usual answer goes out. Requests with no valid key
are not recorded: anyone could make the log grow with them; and one key's refusals are
bounded to ``REFUSALS_PER_MINUTE`` per process, the rest counted in the log line instead.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from jobengine.api.keys import ApiKey
from jobengine.audit.origin import Origin
from jobengine.audit.record import record_refusal
from jobengine.errors import JobEngineError

log = structlog.get_logger("jobengine.audit")

REFUSALS_PER_MINUTE = 60

ROUTE_ACTIONS: dict[tuple[str, str], str] = {
    ("DELETE", "/api/v1/jobs/{job_id}"): "job.cancel",
    ("POST", "/api/v1/jobs/{job_id}/retry"): "dlq.replay",
    ("POST", "/api/v1/runs/{run_id}/cancel"): "run.cancel",
    ("POST", "/api/v1/dlq/{dead_letter_id}/replay"): "dlq.replay",
    ("POST", "/api/v1/dlq/replay"): "dlq.replay",
    ("POST", "/api/v1/dlq/{dead_letter_id}/discard"): "dlq.discard",
    ("DELETE", "/api/v1/dlq"): "dlq.purge",
    ("PUT", "/api/v1/limits/{name}"): "limit.set",
    ("DELETE", "/api/v1/limits/{name}"): "limit.delete",
    ("PUT", "/api/v1/quotas/{tenant_id}"): "quota.set",
    ("DELETE", "/api/v1/quotas/{tenant_id}"): "quota.delete",
    ("PUT", "/api/v1/fair-queues/{queue}"): "fair_queue.set",
    ("DELETE", "/api/v1/fair-queues/{queue}"): "fair_queue.delete",
    ("POST", "/api/v1/schedules"): "schedule.create",
    ("PATCH", "/api/v1/schedules/{schedule_id}"): "schedule.update",
    ("POST", "/api/v1/schedules/{schedule_id}/pause"): "schedule.pause",
    ("POST", "/api/v1/schedules/{schedule_id}/resume"): "schedule.resume",
    ("DELETE", "/api/v1/schedules/{schedule_id}"): "schedule.delete",
    ("POST", "/api/v1/backfills"): "backfill.create",
    ("POST", "/api/v1/backfills/{backfill_id}/cancel"): "backfill.cancel",
    ("POST", "/console/jobs/{job_id}/cancel"): "job.cancel",
    ("POST", "/console/jobs/{job_id}/retry"): "dlq.replay",
    ("POST", "/console/dlq/replay"): "dlq.replay",
    ("POST", "/console/dlq/{dead_letter_id}/replay"): "dlq.replay",
    ("POST", "/console/dlq/{dead_letter_id}/discard"): "dlq.discard",
    ("POST", "/console/schedules/{schedule_id}/pause"): "schedule.pause",
    ("POST", "/console/schedules/{schedule_id}/resume"): "schedule.resume",
}
"""Every HTTP route that does an audited act, by method and path template."""


def key_actor(key: ApiKey) -> str:
    """The name an operator gave the key, and its public prefix, which tells two keys of one
    name apart (the form job history already uses)."""
    return f"api:{key.name} ({key.prefix})"


def remember_key(request: Request, key: ApiKey) -> None:
    request.state.audit_key = key


def origin_of(request: Request) -> Origin:
    """Who this authenticated request is; only called after its key was checked."""
    key: ApiKey = request.state.audit_key
    path = request.url.path
    return Origin(
        actor=key_actor(key),
        surface="console" if path == "/console" or path.startswith("/console/") else "rest",
        client_addr=request.client.host if request.client else None,
        tenant=None if key.is_admin else key.tenant_id,
    )


class _Budget:
    """At most ``per_minute`` refusals filed per actor and minute, in this process."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._window: dict[str, tuple[int, int]] = {}

    def allows(self, actor: str) -> bool:
        minute = int(time.monotonic() // 60)
        with self._lock:
            start, used = self._window.get(actor, (minute, 0))
            if start != minute:
                start, used = minute, 0
            self._window[actor] = (start, used + 1)
            return used < self.per_minute


_BUDGET = _Budget(REFUSALS_PER_MINUTE)


def _refused_act(request: Request) -> str | None:
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if path is None or getattr(request.state, "audit_key", None) is None:
        return None
    return ROUTE_ACTIONS.get((request.method, path))


def _code_of(exc: Exception) -> str:
    return exc.code if isinstance(exc, JobEngineError) else "VALIDATION_ERROR"


def _file(request: Request, action: str, exc: Exception) -> None:
    origin = origin_of(request)
    if not _BUDGET.allows(origin.actor):
        log.warning("audit.refusal_over_budget", actor=origin.actor, action=action)
        return
    params = dict(request.path_params)
    object_id = next(iter(params.values()), None)
    message = exc.message if isinstance(exc, JobEngineError) else "the request was invalid"
    state = request.app.state.jobengine
    record_refusal(
        state.engine,
        origin,
        action,
        _code_of(exc),
        object_id=object_id,
        detail={"message": message},
    )


Handler = Callable[[Request, Any], Response | Awaitable[Response]]


def _filing(previous: Handler) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        action = _refused_act(request)
        server_side = isinstance(exc, JobEngineError) and exc.retryable
        if action is not None and not server_side:
            await run_in_threadpool(_file, request, action, exc)
        answer = previous(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    return handle


def install(app: FastAPI) -> None:
    """Wrap the error handlers in place (after the console's), so both surfaces file."""
    for error in (JobEngineError, RequestValidationError):
        app.add_exception_handler(error, _filing(app.exception_handlers[error]))
