"""``/console`` login, logout and the event stream a logged-in browser follows.

A session is the key's cookie (``session``); the stream is REST's, authenticated by that
cookie because a browser's EventSource cannot send an Authorization header.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Header, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from jobengine.api import (
    routes_streams,
)
from jobengine.api.auth import check_scope, key_for
from jobengine.api.errors import ApiError
from jobengine.api.keys import JOBS_READ
from jobengine.api.state import api_state
from jobengine.console.forms import Csrf
from jobengine.console.pages import redirect, render
from jobengine.console.session import check_csrf, check_origin, current_key, forget, remember

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("", response_class=RedirectResponse)
def home() -> RedirectResponse:
    return redirect("/console/jobs")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, error: str | None = None) -> HTMLResponse:
    return render(request, "login.html", None, error=error)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, api_key: Annotated[str, Form(alias="apiKey")]) -> Response:
    """The key must be live and hold ``jobs:read`` (or ``admin``), as every page needs."""
    try:
        check_origin(request)
        key = key_for(api_state(request), api_key.strip())
        check_scope(key, JOBS_READ, needed_for="the console shows jobs")
    except ApiError as exc:
        return render(request, "login.html", None, status_code=exc.status, error=exc)
    response = redirect("/console/jobs")
    remember(response, api_key.strip(), secure=request.url.scheme == "https")
    return response


@router.post("/logout")
def logout(request: Request, csrf: Csrf = None) -> Response:
    current_key(request)
    check_csrf(request, csrf)
    response = redirect("/console/login")
    forget(response)
    return response


@router.get("/events")
def events(
    request: Request,
    after: Annotated[str | None, Query(max_length=60)] = None,
    job_id: Annotated[int | None, Query(alias="jobId", ge=1, le=2**63 - 1)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=60)] = None,
) -> StreamingResponse:
    """The REST feeds for the logged-in key, which a browser's EventSource can follow (it sends
    the session cookie, never an Authorization header): one job's (``jobId``, ending after
    its final state), or the tenant's (every tenant's for admin keys)."""
    key = current_key(request)
    check_scope(key, JOBS_READ)
    state = api_state(request)
    if job_id is not None:
        scope = routes_streams.job_scope(state, key, job_id)
    else:
        scope = routes_streams.feed_scope(key, key.is_admin)
    start = routes_streams.start_position(state, scope, last_event_id or after)
    return routes_streams.sse(state, scope, start)
