"""What the sync and async clients share: requests as values, the retry rule, the SSE decoder.

Both clients only do I/O around these, so the two can never drift apart in what they send,
what they retry, or how they read a stream.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from jobengine.client._errors import ApiError, DownloadCorrupt, TransportError
from jobengine.client._models import (
    Artifact,
    Downloaded,
    Job,
    JobEvent,
    JobPage,
    JobRequest,
    JobStatus,
    JobType,
)
from jobengine.domain.events import EventEnvelope

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = 10.0
STREAM_READ_TIMEOUT = 60.0
"""An event stream may be idle while a long job runs: a read timeout there only reconnects."""


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """How often and how patiently a request is repeated when repeating it is allowed."""

    attempts: int = 4
    """Tries in all, the first included; 1 turns retries off."""
    backoff_seconds: float = 0.2
    max_backoff_seconds: float = 5.0

    def delay(self, failures: int, retry_after: str | None = None) -> float:
        """Full-jitter exponential backoff; a server's ``Retry-After`` (seconds) is a floor."""
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (failures - 1))
        wait = random.uniform(0, ceiling)
        if retry_after is not None:
            with contextlib.suppress(ValueError):  # an HTTP date: the backoff alone decides
                wait = max(wait, min(float(retry_after), self.max_backoff_seconds))
        return wait


@dataclass(frozen=True, slots=True)
class Call:
    """One API request, independent of the transport that sends it."""

    method: str
    path: str
    params: dict[str, str] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    repeatable: bool = False
    """Safe to send again when the connection broke mid-request (GET, DELETE, keyed POST)."""


def base_headers(api_key: str, tenant_id: str) -> dict[str, str]:
    if not tenant_id:
        raise ValueError("tenant_id must be non-empty: every request names its tenant")
    return {"Authorization": f"Bearer {api_key}", "X-Tenant-Id": tenant_id}


def api_url(base_url: str) -> str:
    return base_url.rstrip("/") + API_PREFIX


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def create_call(request: JobRequest) -> Call:
    """A create is always keyed (the caller's key or a fresh one), so it is always repeatable:
    a retry after a lost response returns the job the first try made."""
    key = request.idempotency_key or new_idempotency_key()
    return Call(
        "POST", "/jobs", json=request.to_json(), headers={"Idempotency-Key": key}, repeatable=True
    )


def batch_call(requests: Sequence[JobRequest]) -> Call:
    """A batch is repeatable only when every job in it carries its own idempotency key."""
    jobs = []
    for request in requests:
        body = request.to_json()
        if request.idempotency_key:
            body["idempotencyKey"] = request.idempotency_key
        jobs.append(body)
    keyed = all(request.idempotency_key for request in requests)
    return Call("POST", "/jobs/batch", json={"jobs": jobs}, repeatable=keyed)


def list_params(
    *,
    status: JobStatus | str | None,
    type: str | None,
    queue: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    limit: int | None,
    cursor: str | None,
) -> dict[str, str]:
    given: dict[str, Any] = {
        "status": None if status is None else JobStatus(status).value,
        "type": type,
        "queue": queue,
        "createdAfter": None if created_after is None else created_after.isoformat(),
        "createdBefore": None if created_before is None else created_before.isoformat(),
        "limit": limit,
        "cursor": cursor,
    }
    return {name: str(value) for name, value in given.items() if value is not None}


def job_path(job_id: int, suffix: str = "") -> str:
    return f"/jobs/{int(job_id)}{suffix}"


def job_type_path(name: str | None = None) -> str:
    return "/job-types" if name is None else f"/job-types/{quote(name, safe='')}"


def parse_job_types(body: Mapping[str, Any]) -> list[JobType]:
    return [JobType.from_json(item) for item in body["items"]]


def parse_page(body: Mapping[str, Any]) -> JobPage:
    return JobPage(
        items=[Job.from_json(item) for item in body["items"]], next_cursor=body.get("nextCursor")
    )


def error_of(response: httpx.Response) -> ApiError:
    """The response's error envelope; the body must have been read."""
    try:
        body = response.json()
    except ValueError:
        body = None
    return ApiError.from_response(response.status_code, body, response.text)


def nothing_was_sent(exc: httpx.TransportError) -> bool:
    """A connection that never opened carried no request, so even a POST may be tried again."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


def stream_timeout(base: httpx.Timeout, remaining: float | None) -> httpx.Timeout:
    read = (
        STREAM_READ_TIMEOUT if remaining is None else max(0.01, min(STREAM_READ_TIMEOUT, remaining))
    )
    return httpx.Timeout(base.connect, read=read, write=base.write, pool=base.pool)


@dataclass(frozen=True, slots=True)
class SSEMessage:
    id: str | None
    event: str
    data: str


class SSEDecoder:
    """Server-sent events, decoded line by line as the HTML standard describes.

    The last event id outlives the message that set it (a later message without ``id:`` keeps
    it), and a ``retry:`` field sets how long to wait before reconnecting.
    """

    def __init__(self) -> None:
        self.last_id: str | None = None
        self.retry_seconds: float | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SSEMessage | None:
        """Take one line (without its end); returns a message when a blank line ends one."""
        if not line:
            if not self._data:
                self._event = ""
                return None
            message = SSEMessage(
                id=self.last_id, event=self._event or "message", data="\n".join(self._data)
            )
            self._event, self._data = "", []
            return message
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry_seconds = int(value) / 1000
        return None


def to_event(message: SSEMessage) -> JobEvent:
    envelope = EventEnvelope.model_validate_json(message.data)
    return JobEvent(id=message.id or str(envelope.id), type=message.event, envelope=envelope)


@dataclass(slots=True)
class Follow:
    """State of one job's stream across reconnects; ``final`` is the job once it ended."""

    job_id: int
    last_event_id: str | None
    deadline: float | None
    timeout: float | None
    failures: int = 0
    final: Job | None = None


# ---- artifacts (issue 13) ----


def artifacts_path(job_id: int, name: str | None = None) -> str:
    suffix = "/artifacts" if name is None else f"/artifacts/{quote(name, safe='')}"
    return job_path(job_id, suffix)


def run_artifacts_path(run_id: int) -> str:
    return f"/runs/{int(run_id)}/artifacts"


def parse_artifacts(body: Mapping[str, Any]) -> list[Artifact]:
    return [Artifact.from_json(item) for item in body["items"]]


def download_retryable(exc: ApiError | TransportError) -> bool:
    """A download to a path starts again from nothing, so it is repeated like a GET."""
    return isinstance(exc, TransportError) or exc.retryable


def partial_path(to: str | os.PathLike[str]) -> str:
    """Where a download to ``to`` is written until its sha256 is checked."""
    return f"{os.fspath(to)}.partial"


@dataclass(slots=True)
class Received:
    """A download as it arrives: counted and hashed, checked against what the server sent."""

    job_id: int
    name: str
    etag: str
    content_type: str
    expected_size: int | None
    size_bytes: int = 0
    _hash: Any = field(default_factory=hashlib.sha256)

    @classmethod
    def of(cls, job_id: int, name: str, response: httpx.Response) -> Received:
        length = response.headers.get("content-length")
        return cls(
            job_id=job_id,
            name=name,
            etag=response.headers.get("etag", "").strip('"'),
            content_type=response.headers.get("content-type", "application/octet-stream"),
            expected_size=int(length) if length is not None else None,
        )

    def add(self, chunk: bytes) -> bytes:
        self.size_bytes += len(chunk)
        self._hash.update(chunk)
        return chunk

    def checked(self, path: str | None) -> Downloaded:
        """What was received, or ``DownloadCorrupt`` when its size or sha256 disagree with
        the server's ``Content-Length`` and ``ETag``."""
        digest = self._hash.hexdigest()
        if self.expected_size is not None and self.size_bytes != self.expected_size:
            raise DownloadCorrupt(
                self.job_id, self.name, f"got {self.size_bytes} of {self.expected_size} bytes"
            )
        if self.etag and digest != self.etag:
            raise DownloadCorrupt(self.job_id, self.name, f"sha256 {digest} is not {self.etag}")
        return Downloaded(
            name=self.name,
            content_type=self.content_type,
            size_bytes=self.size_bytes,
            sha256=digest,
            path=path,
        )
