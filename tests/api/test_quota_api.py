"""Quotas over REST and the CLI: 429 QUOTA_EXCEEDED with Retry-After and nothing written,
admin-only management, the client's and the CLI's refusals, one vocabulary everywhere."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from jobengine.client import JobEngineClient, JobRequest, QuotaExceeded, RetryConfig
from jobengine.embedded import free_loopback_port
from jobengine.store.database import transaction
from tests.api.conftest import LiveServer, bearer, make_key
from tests.integration.cli_support import invoke, one_line_error, parse
from tests.integration.conftest import quiet_cli  # noqa: F401  (a fixture)
from tests.integration.test_submission import row_counts


def same_fields(cli: list[dict[str, Any]], rest: list[dict[str, Any]]) -> bool:
    """The same documents, timestamps compared as instants (``+00:00`` is REST's ``Z``)."""

    def instants(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**r, "updatedAt": datetime.fromisoformat(r["updatedAt"])} for r in rows]

    return instants(cli) == instants(rest)


FAST = RetryConfig(attempts=2, backoff_seconds=0.01, max_backoff_seconds=0.05)


@pytest.fixture
def closed_broker() -> str:
    """The CLI publishes nowhere: submitted jobs stay for the leader."""
    return f"redis://127.0.0.1:{free_loopback_port()}/0"


@pytest.fixture
def admin(live: LiveServer, engine: Engine) -> httpx.Client:
    key = make_key(engine, "ops", "admin")
    return httpx.Client(base_url=live.url, headers=bearer(key), timeout=30)


def test_a_submission_over_quota_answers_429_with_retry_after_and_writes_nothing(
    client: httpx.Client, admin: httpx.Client, engine: Engine
) -> None:
    put = admin.put("/api/v1/quotas/acme", json={"maxQueued": 2})
    assert put.status_code == 200, put.text
    ok = client.post(
        "/api/v1/jobs/batch",
        json={"jobs": [{"type": "noop", "projectId": "p"}, {"type": "noop", "projectId": "p"}]},
    )
    assert ok.status_code == 201, ok.text
    with transaction(engine) as conn:
        before = row_counts(conn)

    refused = client.post("/api/v1/jobs", json={"type": "noop", "projectId": "p"})
    batch = client.post("/api/v1/jobs/batch", json={"jobs": [{"type": "noop", "projectId": "p"}]})

    for answer in (refused, batch):
        assert answer.status_code == 429
        assert answer.headers["Retry-After"] == "5"
        body = answer.json()
        assert (body["code"], body["retryable"]) == ("QUOTA_EXCEEDED", True)
        assert "tenant 'acme' has 2 job(s) queued" in body["message"]
        assert "max_queued is 2" in body["message"]
        assert body["hint"]
    with transaction(engine) as conn:
        assert row_counts(conn) == before == (2, 2, 2)


def test_quotas_are_managed_by_admin_keys_only_and_shown_with_their_usage(
    client: httpx.Client, admin: httpx.Client
) -> None:
    assert client.get("/api/v1/quotas").status_code == 403
    none_yet = client.get("/api/v1/quotas/acme")
    assert (none_yet.status_code, none_yet.json()["code"]) == (404, "QUOTA_NOT_FOUND")
    assert client.put("/api/v1/quotas/acme", json={"maxQueued": 1}).status_code == 403
    bad = admin.put("/api/v1/quotas/acme", json={"maxRunning": 0})
    assert (bad.status_code, bad.json()["code"]) == (422, "VALIDATION_ERROR")

    set_ = admin.put("/api/v1/quotas/acme", json={"maxQueued": 10, "maxRunning": 3, "weight": 2})
    assert set_.status_code == 200, set_.text
    client.post("/api/v1/jobs", json={"type": "noop", "projectId": "p"})
    [row] = admin.get("/api/v1/quotas").json()["items"]
    assert client.get("/api/v1/quotas/acme").json() == row  # the tenant's own, with jobs:read
    assert client.get("/api/v1/quotas/ops").status_code == 403  # never another tenant's
    assert {k: v for k, v in row.items() if k != "updatedAt"} == {
        "tenantId": "acme",
        "maxQueued": 10,
        "maxRunning": 3,
        "weight": 2,
        "queued": 1,
        "running": 0,
        "waiting": 1,  # a capped tenant's job waits for the leader to admit it
    }

    fair = admin.put("/api/v1/fair-queues/shared", json={"maxInFlight": 4})
    assert fair.status_code == 200, fair.text
    assert fair.json()["maxInFlight"] == 4 and fair.json()["inFlight"] == 0
    assert [f["queue"] for f in admin.get("/api/v1/fair-queues").json()["items"]] == ["shared"]

    assert admin.delete("/api/v1/quotas/acme").status_code == 204
    gone = admin.delete("/api/v1/quotas/acme")
    assert (gone.status_code, gone.json()["code"]) == (404, "QUOTA_NOT_FOUND")
    assert admin.delete("/api/v1/fair-queues/shared").status_code == 204
    assert admin.get("/api/v1/quotas").json()["items"] == []


def test_metrics_show_each_quota_its_usage_and_fair_queues(
    live: LiveServer, admin: httpx.Client, client: httpx.Client
) -> None:
    admin.put("/api/v1/quotas/acme", json={"maxQueued": 7, "maxRunning": 2})
    admin.put("/api/v1/fair-queues/shared", json={"maxInFlight": 3})
    client.post("/api/v1/jobs", json={"type": "noop", "projectId": "p", "queue": "shared"})
    text_ = httpx.get(f"{live.url}/metrics").text
    for line in (
        'jobengine_tenant_quota_max_queued{tenant="acme"} 7.0',
        'jobengine_tenant_cap_max_running{tenant="acme"} 2.0',
        'jobengine_tenant_queued{tenant="acme"} 1.0',
        'jobengine_tenant_running{tenant="acme"} 0.0',
        'jobengine_tenant_waiting{tenant="acme"} 1.0',
        'jobengine_fair_queue_waiting{queue="shared"} 1.0',
        'jobengine_fair_queue_in_flight{queue="shared"} 0.0',
    ):
        assert line in text_


def test_the_client_raises_quota_exceeded_with_the_servers_envelope(
    live: LiveServer, admin: httpx.Client, writer_key: str, engine: Engine
) -> None:
    admin.put("/api/v1/quotas/acme", json={"maxQueued": 0})
    with JobEngineClient(live.url, api_key=writer_key, tenant_id="acme", retry=FAST) as c:
        with pytest.raises(QuotaExceeded) as refused:
            c.create("noop", {}, project_id="p")
        with pytest.raises(QuotaExceeded):
            c.create_many([JobRequest("noop", "p"), JobRequest("noop", "p")])
    assert (refused.value.status, refused.value.code, refused.value.retryable) == (
        429,
        "QUOTA_EXCEEDED",
        True,
    )
    assert "max_queued is 0" in refused.value.message
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 0


@pytest.mark.usefixtures("quiet_cli")
def test_the_cli_manages_quotas_prints_the_rest_fields_and_refuses_in_one_line(
    db_url: str, closed_broker: str, admin: httpx.Client
) -> None:
    set_ = parse(
        *invoke(db_url, closed_broker, "quotas", "set", "acme", "--max-queued", "1", "--json")
    )
    listed = parse(*invoke(db_url, closed_broker, "quotas", "list", "--json"))
    rest = admin.get("/api/v1/quotas").json()
    assert same_fields(listed["items"], rest["items"]) and listed["items"] == [set_]
    assert set_["maxQueued"] == 1 and set_["maxRunning"] is None

    assert invoke(db_url, closed_broker, "jobs", "submit", "noop", "--tenant", "acme")[0] == 0
    line = one_line_error(
        *invoke(db_url, closed_broker, "jobs", "submit", "noop", "--tenant", "acme")
    )
    assert "tenant 'acme' has 1 job(s) queued" in line and "jobengine quotas set acme" in line

    fair = parse(
        *invoke(
            db_url,
            closed_broker,
            "quotas",
            "fair",
            "set",
            "shared",
            "--max-in-flight",
            "2",
            "--json",
        )
    )
    assert same_fields([fair], admin.get("/api/v1/fair-queues").json()["items"])
    code, out, err = invoke(db_url, closed_broker, "quotas", "delete", "acme")
    assert (code, out.strip()) == (0, "tenant acme: quota removed"), err
    missing = one_line_error(*invoke(db_url, closed_broker, "quotas", "delete", "acme"))
    assert "tenant 'acme' has no quota" in missing


def test_the_openapi_of_every_submitting_route_names_429_with_the_envelope_and_retry_after(
    client: httpx.Client,
) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    for path in ("/api/v1/jobs", "/api/v1/jobs/batch", "/api/v1/runs"):
        refused = paths[path]["post"]["responses"]["429"]
        schema = refused["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorOut"}, path
        assert refused["content"]["application/json"]["example"]["code"] == "QUOTA_EXCEEDED"
        assert refused["headers"]["Retry-After"]["schema"]["type"] == "integer", path
