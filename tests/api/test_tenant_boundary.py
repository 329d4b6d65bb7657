"""What a tenant's key can learn about the server and about other tenants: nothing.

Another tenant's job or dead letter answers exactly as a missing one (status, code, message
shape), on every route that takes an id; tracebacks (server file paths, code) reach admin keys
only, while a tenant's key still sees its error's code, class, message and details.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine

from tests.api.conftest import LiveServer, bearer, make_key
from tests.api.test_dlq import failed_job

MISSING = 10**9


def shape(response: httpx.Response, some_id: int) -> tuple[int, str, str, str, bool]:
    """A refusal with its id masked, to compare two answers for different ids."""
    body = response.json()
    assert set(body) == {"code", "message", "hint", "retryable"}
    message = body["message"].replace(str(some_id), "<id>")
    return response.status_code, body["code"], message, body["hint"], body["retryable"]


@pytest.fixture
def tenant(live: LiveServer, engine: Engine) -> httpx.Client:
    key = make_key(engine, "acme", "jobs:read", "jobs:write", "dlq:replay")
    return httpx.Client(base_url=live.url, headers=bearer(key), timeout=30)


@pytest.fixture
def admin(live: LiveServer, engine: Engine) -> httpx.Client:
    return httpx.Client(
        base_url=live.url, headers=bearer(make_key(engine, "ops", "admin")), timeout=30
    )


def test_retrying_another_tenants_failed_job_answers_exactly_as_a_missing_id(
    engine: Engine, tenant: httpx.Client
) -> None:
    theirs = failed_job(engine, tenant="globex")
    other = tenant.post(f"/api/v1/jobs/{theirs}/retry")
    missing = tenant.post(f"/api/v1/jobs/{MISSING}/retry")

    assert shape(other, theirs) == shape(missing, MISSING)
    assert other.status_code == 404 and other.json()["code"] == "JOB_NOT_FOUND"
    assert "globex" not in other.text


def test_every_dead_letter_route_answers_another_tenants_entry_as_a_missing_one(
    engine: Engine, tenant: httpx.Client, admin: httpx.Client
) -> None:
    failed_job(engine, tenant="globex")
    [entry] = admin.get("/api/v1/dlq").json()["items"]
    theirs = entry["id"]
    for path, method in (
        ("/api/v1/dlq/{id}", "GET"),
        ("/api/v1/dlq/{id}/replay", "POST"),
        ("/api/v1/dlq/{id}/discard", "POST"),
    ):
        other = tenant.request(method, path.format(id=theirs))
        missing = tenant.request(method, path.format(id=MISSING))
        assert shape(other, theirs) == shape(missing, MISSING), path
        assert other.status_code == 404 and "globex" not in other.text
    assert admin.get(f"/api/v1/dlq/{theirs}").json()["status"] == "open"  # nothing changed


def test_a_tenant_key_sees_no_traceback_and_an_admin_key_does(
    engine: Engine, tenant: httpx.Client, admin: httpx.Client
) -> None:
    job_id = failed_job(engine)
    own = {"X-Tenant-Id": "acme"}
    [entry] = tenant.get("/api/v1/dlq").json()["items"]
    tenant_views = [
        tenant.get(f"/api/v1/jobs/{job_id}").json()["lastError"],
        tenant.get("/api/v1/jobs", headers=own).json()["items"][0]["lastError"],
    ]
    admin_views = [
        admin.get(f"/api/v1/jobs/{job_id}").json()["lastError"],
        admin.get("/api/v1/jobs", headers=own).json()["items"][0]["lastError"],
    ]

    for error in tenant_views:
        assert set(error) == {"code", "class", "message", "details"}
        assert error["class"] == "builtins.RuntimeError"
        assert error["message"] == "downstream is broken"
    for error in admin_views:
        assert ".py" in error["traceback"] and "RuntimeError" in error["traceback"]
    tenant_letter = tenant.get(f"/api/v1/dlq/{entry['id']}").json()
    admin_letter = admin.get(f"/api/v1/dlq/{entry['id']}").json()
    assert tenant_letter["traceback"] is None
    assert tenant_letter["errorMessage"] == "downstream is broken"
    assert ".py" in admin_letter["traceback"]
    assert ".py" not in str(tenant_letter["timeline"])
