"""A real API server for client tests: uvicorn in a thread, on a free loopback port, over the
test's own database and the fleet's Redis; plus httpx transports that break things on purpose
in front of it (the server itself stays real)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

from jobengine.api.app import create_app
from jobengine.api.keys import JOBS_READ, JOBS_WRITE
from tests.api.conftest import LiveServer, api_settings, make_key
from tests.fleet.conftest import Fleet

TENANT = "shop"


@dataclass(frozen=True, slots=True)
class ApiServer:
    url: str
    key: str
    tenant_id: str = TENANT


@contextmanager
def serve(fleet: Fleet) -> Iterator[ApiServer]:
    """The API engineer's ``LiveServer``, but publishing to the fleet's real Redis."""
    settings = api_settings(fleet.db_url, broker_url=fleet.broker_url, stream_heartbeat_seconds=1.0)
    app = create_app(
        settings,
        engine=fleet.engine,
        publisher=fleet.publisher(),
        revoker=None,
        broker_check=lambda: None,
    )
    key = make_key(fleet.engine, TENANT, JOBS_READ, JOBS_WRITE, name="client-tests")
    with LiveServer(app) as live:
        yield ApiServer(url=live.url, key=key)


def envelope_503(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        503,
        json={
            "code": "STORE_UNAVAILABLE",
            "message": "the job store is unreachable",
            "hint": "retry",
            "retryable": True,
        },
        request=request,
    )


@dataclass
class Faults:
    """What the transports below did, for tests to check."""

    requests: list[httpx.Request] = field(default_factory=list)


class FaultyTransport(httpx.HTTPTransport):
    """Passes requests to the real server, except where ``fault`` answers or raises first.

    ``fault(request, n)`` sees the request and how many matching ones came before it; it
    returns a response to answer with, raises to fail the request, or returns None to pass.
    ``lose_response`` forwards a request and then drops the server's answer (the server
    acted, the client never hears of it).
    """

    def __init__(
        self,
        faults: Faults,
        fault: Callable[[httpx.Request, int], httpx.Response | None] | None = None,
        *,
        lose_response: Callable[[httpx.Request, int], bool] | None = None,
        cut_stream_after_first_event: bool = False,
    ) -> None:
        super().__init__()
        self.faults = faults
        self.fault = fault
        self.lose_response = lose_response
        self.cut_stream = cut_stream_after_first_event
        self._cuts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        count = len([r for r in self.faults.requests if r.url.path == request.url.path])
        self.faults.requests.append(request)
        if self.fault is not None and (answer := self.fault(request, count)) is not None:
            return answer
        response = super().handle_request(request)
        if self.lose_response is not None and self.lose_response(request, count):
            response.read()
            response.close()
            raise httpx.ReadError("connection reset (injected)", request=request)
        if self.cut_stream and request.url.path.endswith("/events") and self._cuts == 0:
            self._cuts += 1
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=_CutAfterFirstEvent(response),
                request=request,
            )
        return response


class _CutAfterFirstEvent(httpx.SyncByteStream):
    """The real stream up to the end of its first event, then a broken connection."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        seen = b""
        try:
            for chunk in self._response.iter_raw():
                seen += chunk
                end = seen.find(b"\n\n", seen.find(b"data:"))
                if seen.find(b"data:") != -1 and end != -1:
                    yield seen[: end + 2]
                    raise httpx.ReadError("connection reset mid-stream (injected)")
        finally:
            self._response.close()
        yield seen

    def close(self) -> None:
        self._response.close()
