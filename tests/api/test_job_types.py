"""``/api/v1/job-types`` and job creation judged by the catalogue, on a live server."""

from __future__ import annotations

import httpx
from pydantic import BaseModel, Field
from sqlalchemy import Engine, text

from jobengine.catalogue import announce
from jobengine.job_types import JobTypeSpec
from tests.api.conftest import LiveServer, bearer, make_key


class Invoice(BaseModel):
    order_id: int = Field(ge=1)


INVOICE = JobTypeSpec(
    "send_invoice",
    queue="billing",
    retry_policy={"max_retries": 5, "backoff": "fixed"},
    time_limit_seconds=30,
    description="Mails an invoice.",
    payload_model=Invoice,
)


def jobs_in_db(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM jobs")).scalar_one())


def test_the_list_shows_every_type_in_camel_case_with_its_schema(
    client: httpx.Client, engine: Engine
) -> None:
    announce(engine, [INVOICE], "worker@billing:1")
    items = client.get("/api/v1/job-types").json()["items"]
    by_name = {t["name"]: t for t in items}
    assert {"noop", "sleep", "shell", "fake_inference", "send_invoice"} <= set(by_name)
    invoice = by_name["send_invoice"]
    assert invoice["queue"] == "billing" and invoice["timeLimitSeconds"] == 30
    assert (
        invoice["retryPolicy"]["maxRetries"] == 5 and invoice["retryPolicy"]["backoff"] == "fixed"
    )
    assert invoice["payloadSchema"] == INVOICE.payload_schema
    assert invoice["definitionHash"] == INVOICE.definition_hash and invoice["version"] == 1
    assert invoice["updatedAt"].endswith("Z") or "+00:00" in invoice["updatedAt"]
    assert by_name["shell"]["runsCommands"] is True and by_name["shell"]["needsNetwork"] is False


def test_one_type_is_shown_and_an_unknown_one_is_a_404_envelope(
    client: httpx.Client, engine: Engine
) -> None:
    announce(engine, [INVOICE], "worker@billing:1")
    shown = client.get("/api/v1/job-types/send_invoice")
    assert shown.status_code == 200 and shown.json()["description"] == "Mails an invoice."
    missing = client.get("/api/v1/job-types/nope")
    assert missing.status_code == 404
    body = missing.json()
    assert body["code"] == "JOB_TYPE_NOT_FOUND" and "must announce it" in body["hint"]


def test_reading_the_catalogue_needs_jobs_read(live: LiveServer, engine: Engine) -> None:
    writer_only = make_key(engine, "acme", "jobs:write", name="writer-only")
    response = httpx.get(f"{live.url}/api/v1/job-types", headers=bearer(writer_only))
    assert response.status_code == 403


def test_a_type_announced_while_the_api_runs_is_accepted_on_the_first_try(
    client: httpx.Client, engine: Engine
) -> None:
    assert client.get("/api/v1/job-types/send_invoice").status_code == 404
    announce(engine, [INVOICE], "worker@billing:1")
    created = client.post(
        "/api/v1/jobs",
        json={"type": "send_invoice", "projectId": "p", "payload": {"order_id": 7}},
    )
    assert created.status_code == 201, created.text
    assert created.json()["queue"] == "billing"


def test_a_payload_that_breaks_the_stored_schema_is_a_422_naming_the_field(
    client: httpx.Client, engine: Engine
) -> None:
    announce(engine, [INVOICE], "worker@billing:1")
    refused = client.post(
        "/api/v1/jobs",
        json={"type": "send_invoice", "projectId": "p", "payload": {"order_id": 0}},
    )
    assert refused.status_code == 422
    body = refused.json()
    assert body["code"] == "PAYLOAD_INVALID" and "order_id" in body["message"]
    batch = client.post(
        "/api/v1/jobs/batch",
        json={
            "jobs": [
                {"type": "noop", "projectId": "p"},
                {"type": "send_invoice", "projectId": "p", "payload": {}},
            ]
        },
    )
    assert batch.status_code == 422 and "order_id" in batch.json()["message"]
    assert jobs_in_db(engine) == 0


def test_a_builtin_with_a_payload_of_the_wrong_shape_is_refused_before_it_is_stored(
    client: httpx.Client, engine: Engine
) -> None:
    refused = client.post(
        "/api/v1/jobs", json={"type": "sleep", "projectId": "p", "payload": "ten"}
    )
    assert refused.status_code == 422 and refused.json()["code"] == "PAYLOAD_INVALID"
    assert jobs_in_db(engine) == 0
