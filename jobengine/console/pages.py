"""Rendering: the templates, what every page is given (the key, its scopes, the CSRF token, so
a page shows an action only to a key that may take it), redirects, and the stream position a
live page starts from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from jobengine.api.keys import ADMIN, DLQ_REPLAY, JOBS_WRITE, ApiKey
from jobengine.api.state import api_state
from jobengine.console.session import COOKIE, csrf_token
from jobengine.store.database import transaction
from jobengine.store.outbox import OutboxReader

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True)


def wire(model: BaseModel) -> dict[str, Any]:
    """A REST model as REST sends it: camelCase, JSON types, so pages speak REST's names."""
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
    return data


def render(
    request: Request, template: str, key: ApiKey | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    can = {}
    if key is not None:
        can = {
            "cancel": key.allows(JOBS_WRITE),
            "retry": key.allows(JOBS_WRITE),
            "replay": key.allows(DLQ_REPLAY),
            "discard": key.allows(DLQ_REPLAY),
            "admin": key.allows(ADMIN),
        }
    return templates.TemplateResponse(
        request,
        template,
        {
            "key": key,
            "can": can,
            "csrf": csrf_token(request.cookies.get(COOKIE, "")) if key is not None else "",
            **context,
        },
        status_code=status_code,
    )


def redirect(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303)


def stream_head(request: Request) -> str:
    """The stream position now: events after it are what the page does not show yet."""
    with transaction(api_state(request).engine) as conn:
        return str(OutboxReader(conn).head())
