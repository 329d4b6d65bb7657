"""Keys, scopes and tenants: 401 without a live key, 403 without the scope or for another
tenant's header, and 404 (never 403, never data) for another tenant's job everywhere."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine

from jobengine.api.keys import ApiKeyStore
from jobengine.store.database import transaction
from tests.api.conftest import LiveServer, bearer, make_key


@pytest.fixture
def job_id(client: httpx.Client) -> int:
    response = client.post("/api/v1/jobs", json={"type": "noop", "projectId": "p"})
    assert response.status_code == 201
    return int(response.json()["id"])


def test_another_tenants_job_is_404_on_every_endpoint(
    live: LiveServer, engine: Engine, job_id: int
) -> None:
    other = bearer(make_key(engine, "globex", "jobs:read", "jobs:write"))
    with httpx.Client(base_url=live.url, headers=other, timeout=10) as c:
        for response in (
            c.get(f"/api/v1/jobs/{job_id}"),
            c.delete(f"/api/v1/jobs/{job_id}"),
            c.get(f"/api/v1/jobs/{job_id}/history"),
            c.get(f"/api/v1/jobs/{job_id}/events"),
        ):
            assert response.status_code == 404, response.request.url
            assert response.json()["code"] == "JOB_NOT_FOUND"
            assert "acme" not in response.text
        assert c.get("/api/v1/jobs").json()["items"] == []
    admin = bearer(make_key(engine, "ops", "admin"))
    with httpx.Client(base_url=live.url, headers=admin, timeout=10) as c:
        assert c.get(f"/api/v1/jobs/{job_id}").json()["tenantId"] == "acme"


def test_no_key_bad_key_revoked_key_are_401(live: LiveServer, engine: Engine) -> None:
    with transaction(engine) as conn:
        issued = ApiKeyStore(conn).create("acme", "old", ["jobs:read"])
        ApiKeyStore(conn).revoke(issued.key.prefix)
    with httpx.Client(base_url=live.url, timeout=10) as c:
        for headers in (
            {},
            {"Authorization": "Bearer nonsense"},
            {"Authorization": "Bearer je_abcdefgh_" + "x" * 43},
            {"Authorization": "Basic dXNlcjpwdw=="},
            bearer(issued.plaintext),
        ):
            response = c.get("/api/v1/jobs", headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["code"] == "UNAUTHORIZED"
            assert response.headers["WWW-Authenticate"] == "Bearer"


def test_missing_scope_and_foreign_tenant_header_are_403(live: LiveServer, engine: Engine) -> None:
    reader = bearer(make_key(engine, "acme", "jobs:read"))
    writer = bearer(make_key(engine, "acme", "jobs:write"))
    body = {"type": "noop", "projectId": "p"}
    with httpx.Client(base_url=live.url, timeout=10) as c:
        no_write = c.post("/api/v1/jobs", json=body, headers={**reader, "X-Tenant-Id": "acme"})
        assert no_write.status_code == 403 and "jobs:write" in no_write.json()["message"]
        assert c.get("/api/v1/jobs", headers=writer).status_code == 403
        foreign = c.post("/api/v1/jobs", json=body, headers={**writer, "X-Tenant-Id": "globex"})
        assert foreign.status_code == 403 and foreign.json()["code"] == "FORBIDDEN"
        assert c.get("/api/v1/events", params={"all": "true"}, headers=reader).status_code == 403


def test_admin_may_create_for_any_tenant(live: LiveServer, engine: Engine) -> None:
    admin = bearer(make_key(engine, "ops", "admin"))
    with httpx.Client(base_url=live.url, timeout=10) as c:
        response = c.post(
            "/api/v1/jobs",
            json={"type": "noop", "projectId": "p"},
            headers={**admin, "X-Tenant-Id": "globex"},
        )
        assert response.status_code == 201 and response.json()["tenantId"] == "globex"
