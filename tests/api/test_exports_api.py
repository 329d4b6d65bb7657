"""``GET /api/v1/exports/provenance`` on a live server: the CLI's bytes, streamed as NDJSON;
a tenant's key exports its own tenant only, and another tenant's run answers as a missing
one; a lost download continues from the last line the client holds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from jobengine.audit.chain import Chain
from jobengine.audit.export import AsOf, Exporter, Position, Selection, stream
from jobengine.audit.verify import verify
from jobengine.store.database import transaction
from tests.api.conftest import LiveServer, bearer, make_key
from tests.api.test_tenant_boundary import MISSING, shape
from tests.integration.test_provenance_export import audit_entry, populate

PATH = "/api/v1/exports/provenance"


def a_run(engine: Engine, tenant: str) -> int:
    with transaction(engine) as conn:
        run_id: int = conn.execute(
            text(
                "INSERT INTO runs (tenant_id, project_id, name, jobs_total) "
                "VALUES (:t, 'p', 'r', 1) RETURNING id"
            ),
            {"t": tenant},
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO jobs (tenant_id, project_id, type, payload, status, run_id, "
                "run_key) VALUES (:t, 'p', 'noop', '{}', 'pending', :r, 'only')"
            ),
            {"t": tenant, "r": run_id},
        )
    return run_id


@pytest.fixture
def auditor(live: LiveServer, engine: Engine) -> httpx.Client:
    key = make_key(engine, "acme", "audit:read")
    return httpx.Client(base_url=live.url, headers=bearer(key), timeout=30)


@pytest.fixture
def admin(live: LiveServer, engine: Engine) -> httpx.Client:
    key = make_key(engine, "ops", "admin")
    return httpx.Client(base_url=live.url, headers=bearer(key), timeout=30)


def test_an_admin_export_is_ndjson_with_the_same_bytes_as_the_exporter_and_verifies(
    engine: Engine, admin: httpx.Client, tmp_path: Path
) -> None:
    populate(engine, "acme", 5)
    populate(engine, "globex", 2)
    response = admin.get(PATH, params={"tenant": "acme"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    bound = AsOf.parse(response.headers["x-export-as-of"])
    exporter = Exporter(engine, Selection(tenant="acme"), bound)
    assert response.content == b"".join(stream(exporter, Chain(), Position()))
    path = tmp_path / "api.ndjson"
    path.write_bytes(response.content)
    assert verify(path).counts["job"] == 5


def test_a_tenant_key_exports_only_its_own_tenant_and_another_tenants_run_is_not_found(
    engine: Engine, auditor: httpx.Client
) -> None:
    populate(engine, "acme", 3)
    populate(engine, "globex", 3)
    theirs = a_run(engine, "globex")
    ours = a_run(engine, "acme")

    own = auditor.get(PATH)
    assert own.status_code == 200, own.text
    jobs = [json.loads(line) for line in own.content.splitlines()]
    assert {j["tenantId"] for j in jobs if j["kind"] == "job"} == {"acme"}
    assert b"globex" not in own.content

    other_run = auditor.get(PATH, params={"runId": theirs})
    missing_run = auditor.get(PATH, params={"runId": MISSING})
    assert other_run.status_code == 404 and other_run.json()["code"] == "RUN_NOT_FOUND"
    assert shape(other_run, theirs) == shape(missing_run, MISSING)
    assert "globex" not in other_run.text

    assert auditor.get(PATH, params={"tenant": "globex"}).status_code == 403
    run = auditor.get(PATH, params={"runId": ours})
    assert [json.loads(x)["runKey"] for x in run.content.splitlines()[1:2]] == ["only"]


def test_a_key_without_audit_read_is_refused(live: LiveServer, engine: Engine) -> None:
    key = make_key(engine, "acme", "jobs:read", "jobs:write")
    with httpx.Client(base_url=live.url, headers=bearer(key), timeout=30) as client:
        refused = client.get(PATH)
    assert refused.status_code == 403 and "audit:read" in refused.json()["message"]


def test_a_lost_download_continues_after_the_last_line_held_and_a_wrong_hash_is_refused(
    engine: Engine, admin: httpx.Client
) -> None:
    populate(engine, "acme", 6)
    whole = admin.get(PATH, params={"tenant": "acme"})
    token = whole.headers["x-export-as-of"]
    lines = whole.content.splitlines(keepends=True)
    held = lines[:9]
    last = held[-1].rstrip(b"\n")
    rest = admin.get(
        PATH,
        params={
            "tenant": "acme",
            "asOf": token,
            "after": 8,
            "afterHash": hashlib.sha256(last).hexdigest(),
        },
    )
    assert rest.status_code == 200, rest.text
    assert b"".join(held) + rest.content == whole.content

    wrong = admin.get(
        PATH, params={"tenant": "acme", "asOf": token, "after": 8, "afterHash": "0" * 64}
    )
    assert wrong.status_code == 409 and wrong.json()["code"] == "EXPORT_MISMATCH"
    unbounded = admin.get(PATH, params={"tenant": "acme", "after": 8, "afterHash": "0" * 64})
    assert unbounded.status_code == 422 and "asOf" in unbounded.json()["hint"]


def test_a_tenant_key_sees_only_entries_filed_under_its_tenant_an_admin_sees_every_one(
    engine: Engine, auditor: httpx.Client, admin: httpx.Client
) -> None:
    ours = populate(engine, "acme", 2)
    theirs = populate(engine, "globex", 2)
    audit_entry(engine, "acme", ours[:1], "job.cancel")
    with transaction(engine) as conn:  # a fleet-wide act that touched both tenants' jobs
        entry_id = conn.execute(
            text(
                "INSERT INTO audit_entries (actor, surface, action, object_kind, outcome, detail) "
                "VALUES ('ops', 'cli', 'dlq.purge', 'dead_letter', 'done', "
                '\'{"tenants": ["acme", "globex"]}\') RETURNING id'
            )
        ).scalar_one()
        for job_id in (ours[1], theirs[1]):
            conn.execute(
                text("INSERT INTO audit_entry_jobs (entry_id, job_id) VALUES (:e, :j)"),
                {"e": entry_id, "j": job_id},
            )

    def actions(client: httpx.Client, **params: str) -> list[str]:
        response = client.get(PATH, params=params)
        assert response.status_code == 200, response.text
        lines = [json.loads(line) for line in response.content.splitlines()]
        return [line["action"] for line in lines if line["kind"] == "audit"]

    assert actions(auditor) == ["job.cancel"]
    assert actions(admin, tenant="acme") == ["job.cancel", "dlq.purge"]
