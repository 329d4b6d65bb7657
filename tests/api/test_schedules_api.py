"""``/api/v1/schedules`` on a live server: the REST fields, refusals naming the field, a
tenant's boundary, and a slot's job showing its ``scheduledFor``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine

from jobengine.execution import Executor
from jobengine.maintenance import Reaper
from tests.api.conftest import LiveServer, RecordingPublisher, bearer, make_key

ZONE = ZoneInfo("Europe/Berlin")
BODY: dict[str, Any] = {
    "name": "nightly-report",
    "projectId": "reports",
    "cron": "30 2 * * *",
    "zone": "Europe/Berlin",
    "job": {"type": "noop", "payload": {"report": "sales"}, "priority": 3},
    "overlap": "buffer_one",
}


@pytest.fixture
def admin(live: LiveServer, engine: Engine) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=live.url, headers=bearer(make_key(engine, "ops", "admin")), timeout=30
    ) as c:
        yield c


def test_a_schedule_is_created_read_listed_edited_paused_resumed_and_deleted(
    client: httpx.Client,
) -> None:
    created = client.post("/api/v1/schedules", json=BODY)
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["tenantId"] == "acme"
    assert schedule["job"] == {
        "type": "noop",
        "payload": {"report": "sales"},
        "queue": "default",
        "priority": 3,
        "retryPolicy": None,
        "timeLimitSeconds": None,
    }
    assert (schedule["overlap"], schedule["catchUpSeconds"], schedule["firedCount"]) == (
        "buffer_one",
        300,
        0,
    )
    next_slot = datetime.fromisoformat(schedule["nextSlotAt"])
    assert next_slot > datetime.now(UTC)
    assert next_slot.astimezone(ZONE).strftime("%H:%M") in {"02:30", "03:00"}
    url = f"/api/v1/schedules/{schedule['id']}"
    assert client.get(url).json() == schedule
    assert [s["id"] for s in client.get("/api/v1/schedules").json()["items"]] == [schedule["id"]]
    edited = client.patch(url, json={"cron": "*/5 * * * *", "jitterSeconds": 30}).json()
    assert (edited["cron"], edited["zone"], edited["jitterSeconds"]) == (
        "*/5 * * * *",
        "Europe/Berlin",
        30,
    )
    assert datetime.fromisoformat(edited["nextSlotAt"]) - datetime.now(UTC) <= timedelta(minutes=5)
    assert client.post(f"{url}/pause").json()["paused"] is True
    assert client.post(f"{url}/resume").json()["paused"] is False
    assert client.get(f"{url}/slots").json() == {"items": []}
    assert client.delete(url).status_code == 204
    gone = client.get(url)
    assert (gone.status_code, gone.json()["code"]) == (404, "SCHEDULE_NOT_FOUND")


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"cron": "61 2 * * *"}, "INVALID_CADENCE", "cron"),
        ({"zone": "Europe/Atlantis"}, "INVALID_CADENCE", "zone"),
        ({"cron": None}, "INVALID_CADENCE", "cron"),
        ({"cron": None, "intervalSeconds": 0}, "INVALID_CADENCE", "intervalSeconds"),
        ({"jitterSeconds": -5}, "INVALID_SCHEDULE", "jitterSeconds"),
        (
            {"startAt": "2026-06-01T00:00:00Z", "endAt": "2026-05-01T00:00:00Z"},
            "INVALID_SCHEDULE",
            "endAt",
        ),
    ],
)
def test_a_bad_schedule_is_refused_naming_its_field(
    client: httpx.Client, changes: dict[str, Any], code: str, field: str
) -> None:
    refused = client.post("/api/v1/schedules", json={**BODY, **changes})
    assert refused.status_code == 422, refused.text
    error = refused.json()
    assert error["code"] == code
    assert error["message"].startswith(f"{field}: ")
    assert error["hint"]
    assert client.get("/api/v1/schedules").json()["items"] == []


def test_an_unknown_job_type_or_a_taken_name_is_refused(client: httpx.Client) -> None:
    unknown = client.post("/api/v1/schedules", json={**BODY, "job": {"type": "teleport"}})
    assert (unknown.status_code, unknown.json()["code"]) == (422, "UNKNOWN_JOB_TYPE")
    assert client.post("/api/v1/schedules", json=BODY).status_code == 201
    taken = client.post("/api/v1/schedules", json=BODY)
    assert (taken.status_code, taken.json()["code"]) == (409, "SCHEDULE_NAME_TAKEN")
    other = client.post("/api/v1/schedules", json={**BODY, "name": "weekly-report"}).json()
    renamed = client.patch(f"/api/v1/schedules/{other['id']}", json={"name": BODY["name"]})
    assert (renamed.status_code, renamed.json()["code"]) == (409, "SCHEDULE_NAME_TAKEN")
    assert client.get(f"/api/v1/schedules/{other['id']}").json()["name"] == "weekly-report"


def test_a_tenant_sees_only_its_own_schedules_and_an_admin_sees_all(
    client: httpx.Client, admin: httpx.Client, live: LiveServer, engine: Engine
) -> None:
    mine = client.post("/api/v1/schedules", json=BODY).json()
    other_key = make_key(engine, "globex", "jobs:read", "jobs:write")
    with httpx.Client(base_url=live.url, headers=bearer(other_key), timeout=30) as other:
        assert other.get(f"/api/v1/schedules/{mine['id']}").status_code == 404
        assert other.post(f"/api/v1/schedules/{mine['id']}/pause").status_code == 404
        assert other.get("/api/v1/schedules").json()["items"] == []
        theirs = other.post("/api/v1/schedules", json=BODY).json()
    assert theirs["tenantId"] == "globex"
    listed = admin.get("/api/v1/schedules").json()["items"]
    assert [s["tenantId"] for s in listed] == ["acme", "globex"]
    only = admin.get("/api/v1/schedules", headers={"X-Tenant-Id": "globex"}).json()["items"]
    assert [s["id"] for s in only] == [theirs["id"]]


def test_a_slots_job_shows_its_slot_as_scheduled_for(
    client: httpx.Client, engine: Engine, publisher: RecordingPublisher
) -> None:
    schedule = client.post(
        "/api/v1/schedules", json={**BODY, "cron": None, "intervalSeconds": 60}
    ).json()
    slot = datetime.fromisoformat(schedule["nextSlotAt"])
    Reaper(
        engine,
        publisher,
        Executor(engine, lease_ttl_seconds=30),
        name="reaper-a",
        redispatch_after_seconds=600,
        dispatch_grace_seconds=0,
        clock=lambda: slot + timedelta(seconds=1),
    ).tick()
    [decided] = client.get(f"/api/v1/schedules/{schedule['id']}/slots").json()["items"]
    assert (decided["outcome"], datetime.fromisoformat(decided["slotAt"])) == ("fired", slot)
    job = client.get(f"/api/v1/jobs/{decided['jobId']}").json()
    assert datetime.fromisoformat(job["scheduledFor"]) == slot
    assert client.get(f"/api/v1/schedules/{schedule['id']}").json()["firedCount"] == 1
    scraped = client.get("/metrics").text
    assert 'jobengine_schedule_slots_total{outcome="fired"} 1.0' in scraped
    assert 'jobengine_schedules{state="active"} 1.0' in scraped
