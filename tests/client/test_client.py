"""The blocking client against the real API server (uvicorn on loopback) and a real fleet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from jobengine.client import (
    ApiError,
    JobEngineClient,
    JobRequest,
    JobStatus,
    RetryConfig,
    TransportError,
    WaitTimeout,
)
from jobengine.embedded import free_loopback_port
from jobengine.errors import DuplicateIdempotencyKey
from tests.client.readme import example
from tests.client.server import ApiServer, Faults, FaultyTransport, envelope_503
from tests.fleet import handlers  # noqa: F401  (registers the test job types here too)
from tests.fleet.conftest import Fleet

S = JobStatus
FAST = RetryConfig(attempts=3, backoff_seconds=0.01, max_backoff_seconds=0.05)
LATER = datetime.now(UTC) + timedelta(days=1)


def client_for(api: ApiServer, transport: httpx.BaseTransport | None = None) -> JobEngineClient:
    return JobEngineClient(
        api.url, api_key=api.key, tenant_id=api.tenant_id, retry=FAST, transport=transport
    )


def job_count(fleet: Fleet) -> int:
    with fleet.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM jobs")).scalar_one())


def test_create_get_and_idempotent_replay(api: ApiServer, fleet: Fleet) -> None:
    with client_for(api) as client:
        job = client.create(
            "noop", {"n": 1}, project_id="orders", priority=3, not_before=LATER, idempotency_key="k"
        )
        assert (job.status, job.priority, job.payload, job.tenant_id) == (
            S.PENDING,
            3,
            {"n": 1},
            "shop",
        )
        assert job.not_before == LATER
        again = client.create(
            "noop", {"n": 1}, project_id="orders", priority=3, not_before=LATER, idempotency_key="k"
        )
        assert again.id == job.id
        assert client.get(job.id) == again

        with pytest.raises(ApiError) as refused:
            client.create("noop", {"n": 2}, project_id="orders", idempotency_key="k")
    error = refused.value
    assert (error.status, error.code, error.retryable) == (409, DuplicateIdempotencyKey.code, False)
    assert error.message and error.hint
    assert job_count(fleet) == 1


def test_list_jobs_follows_the_cursor_and_filters(api: ApiServer) -> None:
    with client_for(api) as client:
        made = client.create_many(
            [JobRequest(type="noop", project_id="p", payload={"n": n}) for n in range(7)]
            + [JobRequest(type="sleep", project_id="p", not_before=LATER)]
        )
        first = client.list_page(type="noop", limit=3)
        assert len(first.items) == 3 and first.next_cursor is not None
        listed = list(client.list_jobs(type="noop", page_size=3))
        pending = list(client.list_jobs(status=S.PENDING))
    assert [j.id for j in listed] == [j.id for j in made[:7]]
    assert [j.payload for j in listed] == [{"n": n} for n in range(7)]
    assert [j.id for j in pending] == [made[7].id]


def test_cancel_and_history(api: ApiServer) -> None:
    with client_for(api) as client:
        job = client.create("noop", project_id="p", not_before=LATER)
        cancelled = client.cancel(job.id)
        assert cancelled.status is S.CANCELLED and cancelled.completed_at is not None
        assert client.cancel(job.id).status is S.CANCELLED  # a second cancel changes nothing
        history = client.history(job.id)
    assert [(h.from_status, h.to_status) for h in history] == [
        (None, S.PENDING),
        (S.PENDING, S.CANCELLED),
    ]


def test_a_retryable_503_is_retried_and_a_404_is_not(api: ApiServer) -> None:
    faults = Faults()
    injected: list[httpx.Request] = []

    def first_get_fails(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.method != "GET" or injected:
            return None
        injected.append(request)
        return envelope_503(request)

    with client_for(api, FaultyTransport(faults, first_get_fails)) as client:
        job = client.create("noop", project_id="p", not_before=LATER)
        assert client.get(job.id).id == job.id
        assert [r.method for r in faults.requests] == ["POST", "GET", "GET"]

        faults.requests.clear()
        with pytest.raises(ApiError) as missing:
            client.get(job.id + 1000)
    assert (missing.value.status, missing.value.code) == (404, "JOB_NOT_FOUND")
    assert len(faults.requests) == 1


def test_a_503_that_persists_surfaces_after_the_allowed_tries(api: ApiServer) -> None:
    faults = Faults()
    transport = FaultyTransport(faults, lambda r, n: envelope_503(r))
    with client_for(api, transport) as client, pytest.raises(ApiError) as unavailable:
        client.get(1)
    assert (unavailable.value.status, unavailable.value.code) == (503, "STORE_UNAVAILABLE")
    assert unavailable.value.retryable
    assert len(faults.requests) == FAST.attempts


def test_a_create_whose_response_was_lost_is_retried_with_the_same_key(
    api: ApiServer, fleet: Fleet
) -> None:
    faults = Faults()
    transport = FaultyTransport(faults, lose_response=lambda r, n: r.method == "POST" and n == 0)
    with client_for(api, transport) as client:
        job = client.create("noop", project_id="p", not_before=LATER)
    keys = [r.headers["Idempotency-Key"] for r in faults.requests]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert job_count(fleet) == 1 and job.status is S.PENDING


def test_a_retry_post_is_not_repeated_after_a_lost_response(api: ApiServer) -> None:
    faults = Faults()
    transport = FaultyTransport(faults, lose_response=lambda r, n: r.url.path.endswith("/retry"))
    with client_for(api, transport) as client:
        job = client.create("noop", project_id="p", not_before=LATER)
        with pytest.raises(TransportError):
            client.retry(job.id)
    assert [r.method for r in faults.requests] == ["POST", "POST"]


def test_an_unreachable_server_is_a_transport_error() -> None:
    url = f"http://127.0.0.1:{free_loopback_port()}"
    client = JobEngineClient(url, api_key="k", tenant_id="t", retry=FAST)
    with client, pytest.raises(TransportError):
        client.get(1)


def test_wait_returns_the_completed_job_across_a_dropped_stream(
    api: ApiServer, fleet: Fleet
) -> None:
    fleet.start_worker("w1")
    faults = Faults()
    with client_for(api, FaultyTransport(faults, cut_stream_after_first_event=True)) as client:
        job = client.create("effect", project_id="p")
        done = client.wait(job.id, timeout=60)
        events = list(client.events(job.id))
    assert done.status is S.COMPLETED and done.result == {"attempt": 1}
    streams = [r for r in faults.requests if r.url.path.endswith("/events")]
    assert "Last-Event-ID" not in streams[0].headers
    assert streams[1].headers["Last-Event-ID"]  # the reconnect resumed after the first event
    transitions = [e.to_status for e in events if e.type == "job.transition"]
    assert transitions == [S.SCHEDULED, S.CLAIMED, S.RUNNING, S.COMPLETED]
    assert events[-1].is_final and len({e.id for e in events}) == len(events)


def test_wait_times_out_on_a_job_that_is_not_due(api: ApiServer) -> None:
    with client_for(api) as client:
        job = client.create("noop", project_id="p", not_before=LATER)
        with pytest.raises(WaitTimeout):
            client.wait(job.id, timeout=0.5)


def test_readme_client_example_runs(api: ApiServer, fleet: Fleet) -> None:
    fleet.start_worker("w1")
    namespace: dict[str, object] = {"API_URL": api.url, "API_KEY": api.key}
    exec(example("Python client"), namespace)


def test_retry_sends_a_failed_job_back_and_it_completes_once_fixed(
    api: ApiServer, fleet: Fleet
) -> None:
    with fleet.engine.begin() as conn:
        conn.execute(text("INSERT INTO test_flags VALUES ('broken')"))
    fleet.start_worker("w1")
    with client_for(api) as client:
        job = client.create("broken_while_flagged", project_id="orders")
        assert client.wait(job.id, timeout=60).status is S.FAILED
        with fleet.engine.begin() as conn:
            conn.execute(text("DELETE FROM test_flags"))
        assert client.retry(job.id).status is S.SCHEDULED
        done = client.wait(job.id, timeout=60)
        assert (done.status, done.attempt) == (S.COMPLETED, 2)
        assert client.retry(job.id).status is S.COMPLETED  # already replayed: nothing happens
        never_failed = client.create("noop", project_id="orders")
        with pytest.raises(ApiError) as not_failed:
            client.retry(never_failed.id)
        assert (not_failed.value.status, not_failed.value.code) == (409, "JOB_NOT_FAILED")


def test_a_producer_lists_the_catalogue_and_reads_a_types_schema(api: ApiServer) -> None:
    with client_for(api) as client:
        names = [t.name for t in client.job_types()]
        sleep = client.job_type("sleep")
        with pytest.raises(ApiError) as missing:
            client.job_type("no_such_type")
    assert names == sorted(names) and {"noop", "sleep", "shell"} <= set(names)
    assert sleep.payload_schema is not None and "seconds" in sleep.payload_schema["properties"]
    assert sleep.definition_hash and sleep.version >= 1 and not sleep.runs_commands
    assert (missing.value.status, missing.value.code) == (404, "JOB_TYPE_NOT_FOUND")
