"""``/api/v1/schedules`` with a run per slot on a live server: the run template round trip
(create, get, list, edit), a fired slot naming its run (``runId``, ``lastRunId``) whose jobs
show ``scheduledFor``, and refusals (a cycle, both or neither of job and run) as a 422
naming what was wrong, with nothing written."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from jobengine.execution import Executor
from jobengine.maintenance import Reaper
from tests.api.conftest import RecordingPublisher

RUN: dict[str, Any] = {
    "name": "nightly-etl",
    "jobs": [
        {"key": "extract", "type": "noop", "payload": {"source": "shop"}},
        {"key": "load", "type": "noop", "priority": 4, "triggerRule": "all_done"},
    ],
    "edges": [{"parent": "extract", "child": "load"}],
}
BODY: dict[str, Any] = {
    "name": "etl-nightly",
    "projectId": "etl",
    "cron": "30 2 * * *",
    "zone": "Europe/Berlin",
    "run": RUN,
}


def test_a_run_schedule_round_trips_through_rest(client: httpx.Client) -> None:
    created = client.post("/api/v1/schedules", json=BODY)
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert (schedule["job"], schedule["lastRunId"], schedule["lastJobId"]) == (None, None, None)
    assert schedule["run"] == {
        "name": "nightly-etl",
        "jobs": [
            {
                "key": "extract",
                "type": "noop",
                "payload": {"source": "shop"},
                "queue": None,
                "priority": 0,
                "retryPolicy": None,
                "timeLimitSeconds": None,
                "triggerRule": "all_success",
            },
            {
                "key": "load",
                "type": "noop",
                "payload": {},
                "queue": None,
                "priority": 4,
                "retryPolicy": None,
                "timeLimitSeconds": None,
                "triggerRule": "all_done",
            },
        ],
        "edges": [{"parent": "extract", "child": "load"}],
    }
    url = f"/api/v1/schedules/{schedule['id']}"
    assert client.get(url).json() == schedule
    assert client.get("/api/v1/schedules").json()["items"] == [schedule]
    as_job = client.patch(url, json={"job": {"type": "noop"}}).json()
    assert (as_job["run"], as_job["job"]["type"]) == (None, "noop")
    as_run = client.patch(url, json={"run": {**RUN, "name": "renamed"}}).json()
    assert (as_run["job"], as_run["run"]["name"]) == (None, "renamed")
    both = client.patch(url, json={"job": {"type": "noop"}, "run": RUN})
    assert (both.status_code, both.json()["code"]) == (422, "INVALID_SCHEDULE")
    assert client.get(url).json()["run"]["name"] == "renamed"


@pytest.mark.parametrize(
    ("changes", "code", "says"),
    [
        (
            {"run": {**RUN, "edges": [*RUN["edges"], {"parent": "load", "child": "extract"}]}},
            "RUN_CYCLE",
            "extract -> load -> extract",
        ),
        (
            {"run": {**RUN, "edges": [{"parent": "extract", "child": "publish"}]}},
            "UNKNOWN_RUN_KEY",
            "'publish'",
        ),
        ({"job": {"type": "noop"}}, "INVALID_SCHEDULE", "run: both job and run given"),
        ({"run": None}, "INVALID_SCHEDULE", "job: neither job nor run given"),
        (
            {
                "run": {
                    **RUN,
                    "jobs": [{"key": "a", "type": "noop", "notBefore": "2026-01-01T00:00Z"}],
                    "edges": [],
                }
            },
            "INVALID_SCHEDULE",
            "run.jobs[0].notBefore: ",
        ),
    ],
)
def test_a_bad_run_schedule_is_a_422_naming_what_was_wrong_and_writes_nothing(
    client: httpx.Client, changes: dict[str, Any], code: str, says: str
) -> None:
    refused = client.post("/api/v1/schedules", json={**BODY, **changes})
    assert refused.status_code == 422, refused.text
    error = refused.json()
    assert (error["code"], says in error["message"]) == (code, True), error
    assert error["hint"]
    assert client.get("/api/v1/schedules").json()["items"] == []


def test_a_run_slot_names_its_run_whose_jobs_show_the_slot(
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
    assert (decided["outcome"], decided["jobId"]) == ("fired", None)
    fired = client.get(f"/api/v1/schedules/{schedule['id']}").json()
    assert (fired["lastRunId"], fired["firedCount"]) == (decided["runId"], 1)
    run = client.get(f"/api/v1/runs/{decided['runId']}").json()
    assert (run["name"], run["projectId"], run["jobsTotal"]) == ("nightly-etl", "etl", 2)
    for job in run["jobs"]:
        detail = client.get(f"/api/v1/jobs/{job['id']}").json()
        assert datetime.fromisoformat(detail["scheduledFor"]) == slot
