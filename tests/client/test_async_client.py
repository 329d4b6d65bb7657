"""The asyncio client against the real API server and a real fleet: the same behaviour as the
blocking one, each test one ``asyncio.run``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from jobengine.client import ApiError, AsyncJobEngineClient, JobRequest, JobStatus, RetryConfig
from jobengine.errors import DuplicateIdempotencyKey
from tests.client.server import ApiServer, envelope_503
from tests.fleet import handlers  # noqa: F401  (registers the test job types here too)
from tests.fleet.conftest import Fleet

S = JobStatus
FAST = RetryConfig(attempts=3, backoff_seconds=0.01, max_backoff_seconds=0.05)
LATER = datetime.now(UTC) + timedelta(days=1)


class FirstGetUnavailable(httpx.AsyncHTTPTransport):
    """Answers the first GET with a retryable 503 envelope; passes everything else through."""

    def __init__(self) -> None:
        super().__init__()
        self.methods: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.methods.append(request.method)
        if request.method == "GET" and self.methods.count("GET") == 1:
            return envelope_503(request)
        return await super().handle_async_request(request)


def client_for(
    api: ApiServer, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncJobEngineClient:
    return AsyncJobEngineClient(
        api.url, api_key=api.key, tenant_id=api.tenant_id, retry=FAST, transport=transport
    )


def test_create_list_cancel_and_errors(api: ApiServer) -> None:
    async def scenario() -> None:
        transport = FirstGetUnavailable()
        async with client_for(api, transport) as client:
            job = await client.create("noop", {"n": 0}, project_id="p", idempotency_key="a")
            assert (
                await client.create("noop", {"n": 0}, project_id="p", idempotency_key="a")
            ).id == job.id
            with pytest.raises(ApiError) as conflict:
                await client.create("noop", {"n": 9}, project_id="p", idempotency_key="a")
            assert (conflict.value.status, conflict.value.code) == (
                409,
                DuplicateIdempotencyKey.code,
            )

            assert (await client.get(job.id)).id == job.id  # through one injected 503
            assert transport.methods[-2:] == ["GET", "GET"]

            more = await client.create_many(
                [JobRequest(type="noop", project_id="p", not_before=LATER) for _ in range(4)]
            )
            listed = [j.id async for j in client.list_jobs(page_size=2)]
            assert listed == [job.id, *(j.id for j in more)]

            cancelled = await client.cancel(more[0].id)
            assert cancelled.status is S.CANCELLED
            history = await client.history(more[0].id)
            assert [h.to_status for h in history] == [S.PENDING, S.CANCELLED]

    asyncio.run(scenario())


def test_wait_and_events_on_the_real_fleet(api: ApiServer, fleet: Fleet) -> None:
    fleet.start_worker("w1")

    async def scenario() -> None:
        async with client_for(api) as client:
            job = await client.create("effect", project_id="p")
            done = await client.wait(job.id, timeout=60)
            assert done.status is S.COMPLETED and done.result == {"attempt": 1}
            events = [e async for e in client.events(job.id)]
            transitions = [e.to_status for e in events if e.type == "job.transition"]
            assert transitions == [S.SCHEDULED, S.CLAIMED, S.RUNNING, S.COMPLETED]
            resumed = [e async for e in client.events(job.id, last_event_id=events[2].id)]
            assert [e.id for e in resumed] == [e.id for e in events[3:]]

    asyncio.run(scenario())


def test_the_async_client_reads_the_catalogue_like_the_sync_one(api: ApiServer) -> None:
    async def scenario() -> tuple[list[str], bool]:
        async with client_for(api) as client:
            types = await client.job_types()
            shell = await client.job_type("shell")
        return [t.name for t in types], shell.runs_commands

    names, shell_runs_commands = asyncio.run(scenario())
    assert "shell" in names and shell_runs_commands
