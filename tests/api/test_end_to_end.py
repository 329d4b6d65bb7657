"""The API on a real fleet: a job created over HTTP runs on a Celery worker to ``completed``,
seen by polling and, transition by transition, on its event stream."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from jobengine.api.app import CeleryRevoker, create_app, redis_check
from jobengine.fleet import publisher_app
from tests.api.conftest import LiveServer, api_settings, bearer, make_key
from tests.api.sse import Message, messages
from tests.fleet.conftest import Fleet, wait_until


@pytest.fixture
def fleet_api(fleet: Fleet) -> Iterator[LiveServer]:
    settings = api_settings(fleet.db_url, broker_url=fleet.broker_url)
    app = create_app(
        settings,
        engine=fleet.engine,
        publisher=fleet.publisher(),
        revoker=CeleryRevoker(publisher_app(settings, fleet.broker_url)),
        broker_check=redis_check(fleet.broker_url),
    )
    with LiveServer(app) as server:
        yield server


@pytest.mark.slow
def test_job_created_over_http_completes_and_streams_every_transition(
    fleet: Fleet, fleet_api: LiveServer
) -> None:
    fleet.start_worker("w1")
    key = make_key(fleet.engine, "acme", "jobs:read", "jobs:write")
    headers = {**bearer(key), "X-Tenant-Id": "acme"}
    with httpx.Client(base_url=fleet_api.url, headers=headers, timeout=60) as client:
        assert client.get("/readyz").status_code == 200
        created = client.post("/api/v1/jobs", json={"type": "noop", "projectId": "e2e"})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]

        streamed: list[Message] = []

        def follow() -> None:
            with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as response:
                streamed.extend(m for m in messages(response) if m.data is not None)

        reader = threading.Thread(target=follow)
        reader.start()
        done = wait_until(
            lambda: client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "completed",
            60,
            "completed through the API",
        )
        assert done
        reader.join(30)
        assert not reader.is_alive(), "the job's stream did not end after its final state"
        job = client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["attempt"] == 1 and job["completedAt"] is not None and job["startedAt"]
    steps = [m.data["event"]["toStatus"] for m in streamed if m.data]
    assert steps == ["scheduled", "claimed", "running", "completed"]
    assert {m.event for m in streamed} == {"job.transition"}


@pytest.mark.slow
def test_concurrent_requests_publish_every_job_from_the_servers_threads(
    fleet: Fleet, fleet_api: LiveServer
) -> None:
    """FastAPI runs handlers in a thread pool sharing one Celery publisher: none is lost."""
    fleet.start_worker("w1", concurrency=2)
    key = make_key(fleet.engine, "acme", "jobs:read", "jobs:write")
    headers = {**bearer(key), "X-Tenant-Id": "acme"}
    ids: list[int] = []

    def create(n: int) -> None:
        with httpx.Client(base_url=fleet_api.url, headers=headers, timeout=60) as client:
            response = client.post("/api/v1/jobs", json={"type": "noop", "projectId": f"p{n}"})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])

    threads = [threading.Thread(target=create, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(ids) == 40
    # No reaper runs here, so every job that completes was published by the API itself.
    wait_until(
        lambda: all(fleet.job(i).status.value == "completed" for i in ids), 120, "all completed"
    )
