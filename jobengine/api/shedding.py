"""Load shedding: past a bound on requests in flight the API answers 503 at once.

A request the API cannot serve soon is better refused in a millisecond than left to queue for
a pool connection until the client's own timeout fires, by which time the client retries and
the queue only grows. So at most ``max_in_flight`` requests that may touch Postgres are served
at once; the next is answered ``503`` with the envelope ``OVERLOADED`` (``retryable: true``)
and ``Retry-After``, before anything is read or written. A request already in flight whose
pool checkout times out (the API's ``pool_timeout``, shorter than a client's) ends the same way
(``StoreOverloaded``, mapped in ``jobengine.api.errors``). Probes, metrics and the schema are
never shed, and neither are event streams, which live for minutes and wait mostly idle.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from jobengine.api.errors import envelope
from jobengine.errors import StoreOverloaded

log = structlog.get_logger("jobengine.api")

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"})
STREAM_SUFFIX = "/events"

OVERLOADED_MESSAGE = "the server is serving as many requests as it can; nothing was done"


def overloaded_body() -> dict[str, Any]:
    return envelope(StoreOverloaded.code, OVERLOADED_MESSAGE, StoreOverloaded.hint, True)


class LoadShedding:
    """ASGI middleware: a count of requests in flight (one event loop, so a plain int)."""

    def __init__(self, app: ASGIApp, max_in_flight: int) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.shed = 0
        """Requests answered 503 since start."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path or path in EXEMPT_PATHS or path.endswith(STREAM_SUFFIX):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.shed += 1
            log.warning("api.shed", path=path, in_flight=self.in_flight, shed=self.shed)
            await _refuse(send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def _refuse(send: Send) -> None:
    data = json.dumps(overloaded_body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                (b"retry-after", str(StoreOverloaded.retry_after_seconds).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
