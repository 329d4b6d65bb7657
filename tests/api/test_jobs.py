"""Creating, reading, listing and cancelling jobs over HTTP, with the contract's guardrails."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from sqlalchemy import Engine, text

from tests.api.conftest import RecordingPublisher

ENVELOPE = {"code", "message", "hint", "retryable"}


def create(
    client: httpx.Client, body: dict[str, Any] | None = None, **headers: str
) -> httpx.Response:
    return client.post(
        "/api/v1/jobs", json=body or {"type": "noop", "projectId": "p"}, headers=headers
    )


def test_create_answers_201_with_the_job_and_publishes_it(
    client: httpx.Client, publisher: RecordingPublisher
) -> None:
    response = create(
        client, {"type": "noop", "projectId": "p", "payload": {"x": 1}, "priority": 7}
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert set(job) == {
        "id", "tenantId", "projectId", "type", "queue", "priority", "status", "attempt",
        "payload", "progress", "result", "lastError", "notBefore", "createdAt", "updatedAt",
        "scheduledAt", "startedAt", "completedAt", "scheduledFor",
    }  # fmt: skip
    assert job["scheduledFor"] is None  # a schedule's slot; a producer's job has none
    assert (job["tenantId"], job["projectId"], job["status"], job["priority"]) == (
        "acme", "p", "scheduled", 7,
    )  # fmt: skip
    assert job["createdAt"].endswith("Z")
    assert publisher.sent == [job["id"]]
    again = client.get(f"/api/v1/jobs/{job['id']}")
    assert again.status_code == 200 and again.json()["id"] == job["id"]


def test_missing_tenant_header_is_422_naming_it(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/jobs",
        json={"type": "noop", "projectId": "p"},
        headers={"X-Tenant-Id": ""},
    )
    del client.headers["X-Tenant-Id"]
    missing = create(client)
    for r in (response, missing):
        assert r.status_code == 422
        assert set(r.json()) == ENVELOPE
        assert "X-Tenant-Id" in r.json()["message"]


def test_missing_project_id_is_422_naming_it(client: httpx.Client) -> None:
    response = create(client, {"type": "noop"})
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert "projectId" in response.json()["message"]


def test_bad_values_are_422_envelopes(client: httpx.Client) -> None:
    for body in (
        {"type": "noop", "projectId": "p", "priority": 10},
        {"type": "no-such-type", "projectId": "p"},
        {"type": "noop", "projectId": "p", "notBefore": "2026-11-24T10:00:00"},
        {"type": "noop", "projectId": "p", "payload": {"a": "\x00"}},
        {"type": "noop", "projectId": "p", "retryPolicy": {"maxRetries": "many"}},
        {"type": "noop", "projectId": "p", "surprise": 1},
    ):
        response = create(client, body)
        assert response.status_code == 422, (body, response.text)
        assert set(response.json()) == ENVELOPE


def test_idempotency_same_body_replays_different_body_conflicts(
    client: httpx.Client, engine: Engine
) -> None:
    body = {"type": "noop", "projectId": "p", "payload": {"order": 1}}
    first = create(client, body, **{"Idempotency-Key": "order-1"})
    replay = create(client, body, **{"Idempotency-Key": "order-1"})
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    conflict = create(client, {**body, "payload": {"order": 2}}, **{"Idempotency-Key": "order-1"})
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "DUPLICATE_IDEMPOTENCY_KEY"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 1


def test_twenty_concurrent_requests_with_one_key_create_one_job(
    client: httpx.Client, engine: Engine
) -> None:
    body = {"type": "noop", "projectId": "p"}
    with ThreadPoolExecutor(20) as pool:
        responses = list(
            pool.map(lambda _: create(client, body, **{"Idempotency-Key": "once"}), range(20))
        )
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 1


def test_batch_creates_in_order_in_one_transaction(client: httpx.Client, engine: Engine) -> None:
    jobs = [{"type": "noop", "projectId": "p", "payload": {"n": n}} for n in range(5)]
    jobs[2]["idempotencyKey"] = "batch-2"
    response = client.post("/api/v1/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 201, response.text
    assert [j["payload"]["n"] for j in response.json()["jobs"]] == list(range(5))
    bad = client.post(
        "/api/v1/jobs/batch", json={"jobs": [*jobs, {"type": "nope", "projectId": "p"}]}
    )
    assert bad.status_code == 422
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 5
    assert client.post("/api/v1/jobs/batch", json={"jobs": []}).status_code == 422


def test_list_filters_and_pages_by_id(client: httpx.Client) -> None:
    ids = [create(client).json()["id"] for _ in range(5)]
    sleeper = create(client, {"type": "sleep", "projectId": "p"}).json()["id"]
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "type": "noop"}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == ids
    only = client.get("/api/v1/jobs", params={"type": "sleep", "status": "scheduled"}).json()
    assert [j["id"] for j in only["items"]] == [sleeper]
    for params in ({"status": "nope"}, {"limit": 0}, {"cursor": "garbage"},
                   {"createdAfter": "yesterday"}):  # fmt: skip
        bad = client.get("/api/v1/jobs", params=params)
        assert bad.status_code == 422, params
        assert next(iter(params)) in bad.json()["message"]


def test_cancel_then_cancel_again_then_final_is_409(client: httpx.Client, engine: Engine) -> None:
    job_id = create(client).json()["id"]
    first = client.delete(f"/api/v1/jobs/{job_id}")
    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 200
    history = client.get(f"/api/v1/jobs/{job_id}/history").json()["items"]
    assert [(h["fromStatus"], h["toStatus"]) for h in history] == [
        (None, "scheduled"),
        ("scheduled", "cancelled"),
    ]
    assert history[-1]["actor"].startswith("api:")
    done = create(client).json()["id"]
    with engine.begin() as conn:  # simulate a finished job without a worker
        conn.execute(
            text("UPDATE jobs SET status = 'completed', completed_at = now() WHERE id = :id"),
            {"id": done},
        )
    final = client.delete(f"/api/v1/jobs/{done}")
    assert final.status_code == 409 and final.json()["code"] == "JOB_ALREADY_FINAL"


def test_unknown_route_and_method_are_envelopes(client: httpx.Client) -> None:
    for response in (
        client.get("/api/v1/nothing"),
        client.put("/api/v1/jobs/1"),
        client.get("/api/v1/jobs/not-a-number"),
        client.get("/api/v1/jobs/999999"),
        client.post(
            "/api/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"}
        ),
    ):
        assert response.status_code in (404, 405, 422), response.text
        assert set(response.json()) == ENVELOPE
