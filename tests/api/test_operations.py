"""Health, readiness and metrics: the figures come from Postgres at scrape time."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text

from jobengine.api.app import create_app
from tests.api.conftest import LiveServer, RecordingPublisher, api_settings


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def test_metrics_read_the_engine_state(client: httpx.Client, engine: Engine) -> None:
    for queue in ("default", "default", "gpu"):
        client.post("/api/v1/jobs", json={"type": "noop", "projectId": "p", "queue": queue})
    cancelled = client.post("/api/v1/jobs", json={"type": "noop", "projectId": "p"}).json()
    client.delete(f"/api/v1/jobs/{cancelled['id']}")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO dead_letters (job_id, tenant_id, project_id, type, queue, reason, "
                "attempts, payload, timeline) VALUES (:id, 'acme', 'p', 'noop', 'default', "
                "'retries_exhausted', 4, '{}', '[]')"
            ),
            {"id": cancelled["id"]},
        )
        conn.execute(  # the gpu queue's job has waited an hour for a worker
            text("UPDATE jobs SET scheduled_at = now() - interval '1 hour' WHERE queue = 'gpu'")
        )
    response = client.get("/metrics")
    assert response.status_code == 200
    got = samples(response.text)
    assert got[("jobengine_jobs", (("state", "scheduled"),))] == 3
    assert got[("jobengine_jobs", (("state", "cancelled"),))] == 1
    assert got[("jobengine_jobs", (("state", "running"),))] == 0
    assert got[("jobengine_queue_depth", (("queue", "default"),))] == 2
    assert got[("jobengine_queue_depth", (("queue", "gpu"),))] == 1
    assert 3600 <= got[("jobengine_queue_oldest_waiting_seconds", (("queue", "gpu"),))] < 3700
    assert got[("jobengine_queue_oldest_waiting_seconds", (("queue", "default"),))] < 100
    step = (("from_state", ""), ("to_state", "scheduled"))
    assert got[("jobengine_transitions_total", step)] == 4
    assert got[("jobengine_lease_expiries_total", ())] == 0
    assert got[("jobengine_retries_total", ())] == 0
    dead = (("reason", "retries_exhausted"), ("type", "noop"))
    assert got[("jobengine_dead_letters_open", dead)] == 1
    assert got[("jobengine_api_guard_seconds_count", (("operation", "submit"),))] >= 4


def test_readyz_names_what_is_down(db_url: str, engine: Engine) -> None:
    def redis_down() -> None:
        raise ConnectionError("connection refused")

    app: FastAPI = create_app(
        api_settings(db_url),
        engine=engine,
        publisher=RecordingPublisher(),
        revoker=None,
        broker_check=redis_down,
    )
    with LiveServer(app) as live:
        assert httpx.get(f"{live.url}/healthz").json() == {"status": "ok", "checks": {}}
        ready = httpx.get(f"{live.url}/readyz")
    assert ready.status_code == 503
    assert ready.json()["message"] == "not ready: redis is down (connection refused)"


def test_readyz_ok(client: httpx.Client) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}
