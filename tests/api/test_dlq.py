"""Dead letters over HTTP: list, show, replay (one, by filter), discard, purge, retry a job;
tenant-scoped like every endpoint, every refusal in the envelope."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine

from jobengine import guard
from jobengine.domain.job import NewJob
from jobengine.execution import Executor, describe_error
from jobengine.store.database import transaction
from tests.api.conftest import LiveServer, bearer, make_key


def failed_job(engine: Engine, tenant: str = "acme", job_type: str = "noop") -> int:
    """A job that failed for good on its only attempt, as a worker records it."""
    with transaction(engine) as conn:
        job = guard.create_job(
            conn,
            NewJob(type=job_type, tenant_id=tenant, retry_policy={"max_retries": 0}),
            schedule=True,
        )
    assert job is not None
    executor = Executor(engine, lease_ttl_seconds=30)
    claim = executor.claim(job.id, "worker-1")
    assert claim is not None
    try:
        raise RuntimeError("downstream is broken")
    except RuntimeError as exc:
        executor.record_outcome_of_failure(claim, exc, describe_error(exc))
    return job.id


@pytest.fixture
def ops(live: LiveServer, engine: Engine) -> httpx.Client:
    key = make_key(engine, "acme", "jobs:read", "jobs:write", "dlq:replay")
    return httpx.Client(base_url=live.url, headers=bearer(key), timeout=30)


def test_dead_letter_is_listed_shown_and_replayed_once(engine: Engine, ops: httpx.Client) -> None:
    job_id = failed_job(engine)
    listed = ops.get("/api/v1/dlq").json()
    assert [e["jobId"] for e in listed["items"]] == [job_id]
    entry = listed["items"][0]
    assert (entry["reason"], entry["errorClass"], entry["attempts"]) == (
        "retries_exhausted",
        "builtins.RuntimeError",
        1,
    )
    shown = ops.get(f"/api/v1/dlq/{entry['id']}").json()
    assert shown["timeline"][-1]["toStatus"] == "failed"
    assert shown["traceback"] is None  # a tenant's key; admin keys see it (test_tenant_boundary)

    first = ops.post(f"/api/v1/dlq/{entry['id']}/replay", json={"reason": "fixed"})
    second = ops.post(f"/api/v1/dlq/{entry['id']}/replay")
    assert (first.status_code, first.json()["outcome"]) == (200, "replayed")
    assert (second.status_code, second.json()["outcome"]) == (200, "already_replayed")
    replays = ops.get(f"/api/v1/dlq/{entry['id']}").json()["replays"]
    assert [(r["reason"], r["outcome"]) for r in replays] == [("fixed", "in_flight")]
    assert ops.get(f"/api/v1/jobs/{job_id}").json()["status"] == "scheduled"
    assert ops.get("/api/v1/dlq").json()["items"] == []


def test_discard_then_replay_is_refused_and_purge_needs_admin(
    live: LiveServer, engine: Engine, ops: httpx.Client
) -> None:
    job_id = failed_job(engine)
    [entry] = ops.get("/api/v1/dlq").json()["items"]
    assert ops.post(f"/api/v1/dlq/{entry['id']}/discard", json={"reason": "obsolete"}).json()[
        "discarded"
    ]
    assert not ops.post(f"/api/v1/dlq/{entry['id']}/discard").json()["discarded"]
    refused = ops.post(f"/api/v1/dlq/{entry['id']}/replay")
    assert refused.status_code == 409 and refused.json()["code"] == "DEAD_LETTER_DISCARDED"
    assert ops.delete("/api/v1/dlq", params={"olderThanSeconds": 0}).status_code == 403
    admin = bearer(make_key(engine, "ops", "admin"))
    with httpx.Client(base_url=live.url, headers=admin, timeout=30) as c:
        assert c.delete("/api/v1/dlq", params={"olderThanSeconds": 0}).json() == {"purged": 1}
    assert ops.get(f"/api/v1/jobs/{job_id}").json()["status"] == "failed"


def test_retry_endpoint_replays_a_failed_job_and_refuses_others(
    engine: Engine, ops: httpx.Client
) -> None:
    job_id = failed_job(engine)
    retried = ops.post(f"/api/v1/jobs/{job_id}/retry", json={"freshBudget": True})
    assert retried.status_code == 200 and retried.json()["status"] == "scheduled"
    again = ops.post(f"/api/v1/jobs/{job_id}/retry")  # safe to repeat: nothing more happens
    assert again.status_code == 200 and again.json()["status"] == "scheduled"
    [entry] = ops.get("/api/v1/dlq", params={"status": "replayed"}).json()["items"]
    assert entry["replayCount"] == 1
    never_failed = ops.post(
        "/api/v1/jobs", json={"type": "noop", "projectId": "p"}, headers={"X-Tenant-Id": "acme"}
    ).json()
    refused = ops.post(f"/api/v1/jobs/{never_failed['id']}/retry")
    assert refused.status_code == 409 and refused.json()["code"] == "JOB_NOT_FAILED"
    assert set(refused.json()) == {"code", "message", "hint", "retryable"}


def test_bulk_replay_needs_a_filter_and_a_dry_run_changes_nothing(
    engine: Engine, ops: httpx.Client
) -> None:
    ids = [failed_job(engine) for _ in range(3)]
    unfiltered = ops.post("/api/v1/dlq/replay", json={})
    assert unfiltered.status_code == 422 and unfiltered.json()["code"] == "FILTER_REQUIRED"
    dry = ops.post("/api/v1/dlq/replay", json={"type": ["noop"], "dryRun": True}).json()
    assert dry["dryRun"] and len(dry["selected"]) == 3 and dry["replayed"] == []
    assert len(ops.get("/api/v1/dlq").json()["items"]) == 3
    done = ops.post("/api/v1/dlq/replay", json={"type": ["noop"]}).json()
    assert sorted(r["jobId"] for r in done["replayed"]) == ids
    bad = ops.post("/api/v1/dlq/replay", json={"failureReason": ["no_such_reason"]})
    assert bad.status_code == 422 and "failureReason" in bad.json()["message"]


def test_the_failure_reason_filter_has_one_name_and_the_old_ones_still_work(
    engine: Engine, ops: httpx.Client
) -> None:
    failed_job(engine)
    for params in ({"failureReason": "retries_exhausted"}, {"reason": "retries_exhausted"}):
        assert len(ops.get("/api/v1/dlq", params=params).json()["items"]) == 1, params
    assert ops.get("/api/v1/dlq", params={"failureReason": "poison"}).json()["items"] == []
    for body in ({"failureReason": ["poison"]}, {"deadLetterReason": ["poison"]}):
        dry = ops.post("/api/v1/dlq/replay", json={**body, "dryRun": True}).json()
        assert dry["selected"] == [], body
    spec = ops.get("/openapi.json").json()["paths"]["/api/v1/dlq"]["get"]["parameters"]
    assert {p["name"]: p.get("deprecated", False) for p in spec}["reason"] is True


def test_status_all_lists_every_entry_and_the_total_counts_beyond_the_page(
    engine: Engine, ops: httpx.Client
) -> None:
    first, _second = failed_job(engine), failed_job(engine)
    [entry] = [e for e in ops.get("/api/v1/dlq").json()["items"] if e["jobId"] == first]
    ops.post(f"/api/v1/dlq/{entry['id']}/discard", json={"reason": "obsolete"})
    shown = ops.get(f"/api/v1/dlq/{entry['id']}").json()
    assert shown["statusReason"] == "obsolete" and shown["statusChangedBy"].startswith("api:")
    page = ops.get("/api/v1/dlq", params={"status": "all", "limit": 1}).json()
    assert (len(page["items"]), page["total"], page["totalExact"]) == (1, 2, True)
    rest = ops.get("/api/v1/dlq", params={"status": "all", "cursor": page["nextCursor"]})
    assert len(rest.json()["items"]) == 1 and rest.json()["total"] == 2
    jobs_cursor = ops.get("/api/v1/jobs", params={"limit": 1}).json()["nextCursor"]
    refused = ops.get("/api/v1/dlq", params={"cursor": jobs_cursor})
    assert refused.status_code == 422 and refused.json()["code"] == "BAD_CURSOR"
    assert ops.get("/api/v1/dlq").json()["total"] == 1
    bad = ops.get("/api/v1/dlq", params={"status": "closed"})
    assert bad.status_code == 422
    assert "'open', 'replayed', 'discarded' or 'all'" in bad.json()["message"]


def test_another_tenants_dead_letters_are_404_and_unlisted(
    live: LiveServer, engine: Engine, ops: httpx.Client
) -> None:
    job_id = failed_job(engine, tenant="globex")
    admin = bearer(make_key(engine, "ops", "admin"))
    with httpx.Client(base_url=live.url, headers=admin, timeout=30) as c:
        [entry] = c.get("/api/v1/dlq").json()["items"]
    assert ops.get("/api/v1/dlq").json()["items"] == []
    for response in (
        ops.get(f"/api/v1/dlq/{entry['id']}"),
        ops.post(f"/api/v1/dlq/{entry['id']}/replay"),
        ops.post(f"/api/v1/dlq/{entry['id']}/discard"),
        ops.post(f"/api/v1/jobs/{job_id}/retry"),
    ):
        assert response.status_code == 404, response.request.url
        assert "globex" not in response.text


def test_reading_needs_a_key_and_replaying_needs_its_scope(
    live: LiveServer, engine: Engine, client: httpx.Client
) -> None:
    failed_job(engine)
    assert httpx.get(f"{live.url}/api/v1/dlq").status_code == 401
    [entry] = client.get("/api/v1/dlq").json()["items"]
    refused = client.post(f"/api/v1/dlq/{entry['id']}/replay")
    assert refused.status_code == 403 and "dlq:replay" in refused.json()["message"]


def test_metrics_count_open_dead_letters_by_reason_and_type(
    live: LiveServer, engine: Engine
) -> None:
    failed_job(engine)
    failed_job(engine)
    text = httpx.get(f"{live.url}/metrics").text
    assert 'jobengine_dead_letters_open{reason="retries_exhausted",type="noop"} 2.0' in text


def test_progress_reported_by_a_handler_is_served_with_the_job(
    engine: Engine, client: httpx.Client
) -> None:
    created = client.post("/api/v1/jobs", json={"type": "noop", "projectId": "p"}).json()
    executor = Executor(engine, lease_ttl_seconds=30)
    claim = executor.claim(created["id"], "worker-1")
    assert claim is not None
    assert executor.report_progress(claim, {"fraction": 0.5, "message": "halfway"})
    job = client.get(f"/api/v1/jobs/{created['id']}").json()
    assert job["progress"] == {"fraction": 0.5, "message": "halfway"}
