"""The error envelope ``{code, message, hint, retryable}``, for every error the API answers.

Engine errors already carry all four fields, so the envelope is built from the exception and
this module only decides the HTTP status. Framework errors (validation, unknown route, wrong
method) and unexpected exceptions get the same envelope, so a client parses one shape.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobengine.artifacts.errors import ArtifactNotFound, ArtifactStorageUnavailable
from jobengine.audit.export import BoundNotSettled, ExportMismatch
from jobengine.backfills.errors import BackfillNotFound
from jobengine.cancellation import JobAlreadyFinal
from jobengine.dead_letters import (
    DeadLetterDiscarded,
    DeadLetterNotFound,
    DeadLetterNotOpen,
    JobNotFailed,
)
from jobengine.errors import (
    DuplicateIdempotencyKey,
    JobEngineError,
    JobNotFound,
    PayloadTooLarge,
    StoreConflict,
    StoreOverloaded,
    StoreStatementCancelled,
    StoreUnavailable,
    TransitionRefused,
    ValidationError,
)
from jobengine.quotas.errors import QuotaExceeded, QuotaNotFound
from jobengine.runs.errors import RunAlreadyFinal, RunNotFound
from jobengine.schedules.errors import ScheduleNameTaken, ScheduleNotFound

log = structlog.get_logger("jobengine.api")


class ApiError(JobEngineError):
    """An error the API itself raises; ``status`` is its HTTP status."""

    status = 400


class Unauthorized(ApiError):
    status = 401
    code = "UNAUTHORIZED"
    hint = "Send 'Authorization: Bearer je_<prefix>_<secret>'; create keys with `jobengine keys`."


class Forbidden(ApiError):
    status = 403
    code = "FORBIDDEN"


class ServiceNotReady(ApiError):
    status = 503
    code = "NOT_READY"
    retryable = True


STATUS_BY_ERROR: tuple[tuple[type[JobEngineError], int], ...] = (
    (QuotaExceeded, 429),
    (QuotaNotFound, 404),
    (BackfillNotFound, 404),
    (PayloadTooLarge, 413),
    (ValidationError, 422),
    (JobNotFound, 404),
    (ArtifactNotFound, 404),
    (RunNotFound, 404),
    (RunAlreadyFinal, 409),
    (ScheduleNotFound, 404),
    (ScheduleNameTaken, 409),
    (ArtifactStorageUnavailable, 503),
    (DuplicateIdempotencyKey, 409),
    (JobAlreadyFinal, 409),
    (DeadLetterNotFound, 404),
    (DeadLetterDiscarded, 409),
    (DeadLetterNotOpen, 409),
    (JobNotFailed, 409),
    (TransitionRefused, 409),
    (ExportMismatch, 409),  # provenance exports
    (BoundNotSettled, 503),
    (StoreUnavailable, 503),
    (StoreConflict, 503),
    (StoreStatementCancelled, 503),
)
"""First match wins, so subclasses come before their parents."""

HTTP_CODES = {
    400: ("BAD_REQUEST", "Check the request against /openapi.json."),
    401: (Unauthorized.code, Unauthorized.hint),
    403: ("FORBIDDEN", "This key may not do that."),
    404: ("NOT_FOUND", "Check the path; every endpoint is listed in /openapi.json."),
    405: ("METHOD_NOT_ALLOWED", "Check the method; /openapi.json lists each path's methods."),
    406: ("NOT_ACCEPTABLE", "Accept application/json or text/event-stream as documented."),
    413: ("PAYLOAD_TOO_LARGE", "Send a smaller body."),
    415: ("UNSUPPORTED_MEDIA_TYPE", "Send JSON with Content-Type: application/json."),
}


def envelope(code: str, message: str, hint: str = "", retryable: bool = False) -> dict[str, Any]:
    return {"code": code, "message": message, "hint": hint, "retryable": retryable}


def status_for(exc: JobEngineError) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(exc: JobEngineError, headers: dict[str, str] | None = None) -> JSONResponse:
    body = envelope(exc.code, exc.message, exc.hint, exc.retryable)
    return JSONResponse(body, status_code=status_for(exc), headers=headers)


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("query", "limit")`` → ``limit``; ``("body", "jobs", 3, "type")`` → ``jobs[3].type``."""
    parts = list(loc)
    if parts and parts[0] in ("query", "header", "path", "cookie", "body"):
        parts = parts[1:]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def validation_message(exc: RequestValidationError) -> str:
    """One line naming every offending field, e.g. ``X-Tenant-Id: Field required``."""
    return "; ".join(
        f"{_where(e.get('loc', ()))}: {str(e.get('msg', 'invalid')).removeprefix('Value error, ')}"
        for e in exc.errors()
    )


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _not_json(exc: RequestValidationError) -> str | None:
    """Why the body could not be read as JSON, with the line and column, or None."""
    for error in exc.errors():
        loc = error.get("loc", ())
        if error.get("type") != "json_invalid" or len(loc) < 2 or not isinstance(loc[1], int):
            continue
        doc = exc.body if isinstance(exc.body, str) else ""
        pos = loc[1]
        line = doc.count("\n", 0, pos) + 1
        column = pos - (doc.rfind("\n", 0, pos) + 1) + 1
        why = (error.get("ctx") or {}).get("error") or "invalid JSON"
        return (
            f"the request body is not valid JSON: {str(why).lower()} at line {line}, column "
            f"{column} (character {pos})"
        )
    return None


def _body_media_problem(request: Request, exc: RequestValidationError) -> str | None:
    """A body refused whole (``loc == ("body",)``) because it was not sent as JSON."""
    if not any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors()):
        return None
    content_type = request.headers.get("content-type")
    if content_type is None:
        return "the request body was sent without a Content-Type header, so it was not read as JSON"
    if not _is_json(content_type):
        return f"the request body was sent as {content_type[:80]!r}, so it was not read as JSON"
    return None


async def _engine_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, JobEngineError)
    if status_for(exc) >= 500:
        log.warning("api.error", path=request.url.path, code=exc.code, error=exc.message)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    if isinstance(exc, QuotaExceeded | StoreOverloaded):
        headers = {"Retry-After": str(exc.retry_after_seconds)}
    return error_response(exc, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    media = _body_media_problem(request, exc)
    if media is not None:
        hint = "Send the body as JSON with the header 'Content-Type: application/json'."
        return JSONResponse(envelope("UNSUPPORTED_MEDIA_TYPE", media, hint), status_code=415)
    not_json = _not_json(exc)
    if not_json is not None:
        hint = "The body must be one JSON document (an object, as /openapi.json shows)."
        return JSONResponse(envelope("INVALID_JSON", not_json, hint), status_code=422)
    body = envelope(
        "VALIDATION_ERROR",
        validation_message(exc),
        "Fix the named fields; /openapi.json describes each one.",
    )
    return JSONResponse(body, status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code, hint = HTTP_CODES.get(exc.status_code, (f"HTTP_{exc.status_code}", ""))
    body = envelope(code, str(exc.detail), hint, exc.status_code >= 500)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("api.unexpected", path=request.url.path, error_class=type(exc).__name__)
    body = envelope(
        "INTERNAL",
        "the server failed to handle the request",
        "Retry later; if it persists, the server log names the cause.",
    )
    return JSONResponse(body, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(JobEngineError, _engine_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
