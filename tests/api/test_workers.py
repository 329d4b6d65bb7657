"""``GET /api/v1/workers`` and the fleet's figures in ``/metrics``: workers by state, and the
types whose jobs wait because no live worker handles them."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine, text

from jobengine.store.database import transaction
from jobengine.store.workers_repository import WorkerRecord, WorkersRepository
from tests.api.conftest import LiveServer, bearer, make_key
from tests.api.test_operations import samples


def _worker(name: str, types: list[str]) -> WorkerRecord:
    return WorkerRecord(
        name=name,
        host="host-1",
        pid=os.getpid(),
        queues=["default", *(f"jobs.{t}" for t in types)],
        types=types,
        concurrency=2,
        sealed=False,
        version="0.1.0",
        started_at=datetime.now(UTC),
    )


def _fleet(engine: Engine) -> None:
    """A live worker for noop, a draining one for sleep, one gone an hour for fake_inference."""
    with transaction(engine) as conn:
        repo = WorkersRepository(conn)
        repo.announce(_worker("live@host-1", ["noop"]))
        repo.announce(_worker("leaving@host-1", ["sleep"]), draining=True)
        repo.announce(_worker("dead@host-1", ["fake_inference"]))
        conn.execute(
            text(
                "UPDATE workers SET last_seen_at = now() - interval '1 hour' "
                "WHERE name = 'dead@host-1'"
            )
        )


def test_an_admin_key_sees_live_and_draining_workers_and_the_types_no_live_worker_handles(
    live: LiveServer, client: httpx.Client, engine: Engine
) -> None:
    _fleet(engine)
    for job_type, payload in (("noop", {}), ("sleep", {"seconds": 1}), ("fake_inference", {})):
        created = client.post(
            "/api/v1/jobs", json={"type": job_type, "projectId": "p", "payload": payload}
        )
        assert created.status_code == 201, created.text
    admin = bearer(make_key(engine, "ops", "admin", name="ops"))

    body = httpx.get(f"{live.url}/api/v1/workers", headers=admin).json()
    assert [(w["name"], w["state"]) for w in body["workers"]] == [
        ("leaving@host-1", "draining"),
        ("live@host-1", "live"),
    ]
    first = body["workers"][1]
    assert first["types"] == ["noop"] and first["queues"] == ["default", "jobs.noop"]
    assert first["concurrency"] == 2 and first["seenSecondsAgo"] < 30
    waiting = {t["type"]: t for t in body["typesWithoutWorker"]}
    assert sorted(waiting) == ["fake_inference", "sleep"]  # noop has a live worker
    assert waiting["sleep"]["waiting"] == 1 and waiting["sleep"]["oldestWaitingSeconds"] >= 0
    assert waiting["sleep"]["message"].startswith("no live worker handles type 'sleep'")
    assert body["ttlSeconds"] == 30

    everyone = httpx.get(f"{live.url}/api/v1/workers", params={"all": "true"}, headers=admin)
    states = {w["name"]: w["state"] for w in everyone.json()["workers"]}
    assert states == {"dead@host-1": "gone", "leaving@host-1": "draining", "live@host-1": "live"}


def test_a_tenant_key_is_refused_the_fleet_view_with_the_scope_it_lacks(
    client: httpx.Client,
) -> None:
    response = client.get("/api/v1/workers")
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN" and "'admin'" in response.json()["message"]


def test_metrics_count_workers_by_state_and_the_jobs_waiting_for_a_worker_by_type(
    client: httpx.Client, engine: Engine
) -> None:
    _fleet(engine)
    for _ in range(2):
        client.post("/api/v1/jobs", json={"type": "sleep", "projectId": "p", "payload": {}})
    got = samples(client.get("/metrics").text)
    assert got[("jobengine_workers", (("state", "live"),))] == 1
    assert got[("jobengine_workers", (("state", "draining"),))] == 1
    assert got[("jobengine_workers", (("state", "gone"),))] == 1
    assert got[("jobengine_types_without_worker", (("type", "sleep"),))] == 2
    assert got[("jobengine_types_without_worker_oldest_seconds", (("type", "sleep"),))] >= 0
    assert ("jobengine_types_without_worker", (("type", "noop"),)) not in got
