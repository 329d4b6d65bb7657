"""The operator's web console, served by the API at ``/console`` (README: Console).

Server-rendered pages (Jinja2) with one small committed script for live updates: no build
step, no Node, nothing fetched from elsewhere, so it works offline and ``make dev`` serves it
as it is.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from jobengine.api.errors import status_for, validation_message
from jobengine.console import routes_dlq, routes_fleet, routes_jobs, routes_session
from jobengine.console.pages import HERE, render
from jobengine.console.session import PATH, LoginRequired, current_key
from jobengine.errors import JobEngineError, ValidationError

Handler = Callable[[Request, Any], Response | Awaitable[Response]]


def install(app: FastAPI) -> None:
    """Mount the console; its errors become pages, the API's stay JSON envelopes."""
    for module in (routes_session, routes_jobs, routes_dlq, routes_fleet):
        app.include_router(module.router)
    app.mount(f"{PATH}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    for error in (JobEngineError, RequestValidationError):
        previous = app.exception_handlers[error]
        app.add_exception_handler(error, _as_page(previous))


def _as_page(previous: Handler) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        path = request.url.path
        if not (path == PATH or path.startswith(f"{PATH}/")):
            answer = previous(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        if isinstance(exc, RequestValidationError):
            exc = ValidationError(validation_message(exc), hint="Fix the named field.")
        assert isinstance(exc, JobEngineError)
        if isinstance(exc, LoginRequired) and request.method == "GET":
            return RedirectResponse(f"{PATH}/login", status_code=303)
        try:
            key = current_key(request)
        except LoginRequired:
            key = None
        return render(request, "error.html", key, status_code=status_for(exc), error=exc)

    return handle
