"""``/api/v1/limits``: admins set, read and delete rate limits; a job a limit holds shows why in
its history; ``/metrics`` reports each limit's tokens, waiting jobs and next admission; bad
definitions are 422 envelopes that name the field and how to fix it."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine

from tests.api.conftest import LiveServer, bearer, make_key

TEN_A_SECOND = {"scope": "type", "jobType": "noop", "rate": 10, "per": "second", "burst": 2}
TWO_THEN_ONE_AN_HOUR = {"scope": "type", "jobType": "noop", "rate": 1, "per": "hour", "burst": 2}
"""A bucket that refills too slowly to change while a test runs: at ten a second, four
submissions taking over 100 ms on a busy machine admitted a third job and failed the test."""


@pytest.fixture
def admin(live: LiveServer, engine: Engine) -> httpx.Client:
    headers = bearer(make_key(engine, "ops", "admin", name="ops"))
    return httpx.Client(base_url=live.url, headers=headers, timeout=30)


def test_an_admin_sets_reads_and_deletes_a_limit_in_the_rest_vocabulary(
    admin: httpx.Client,
) -> None:
    put = admin.put("/api/v1/limits/noop-10s", json=TEN_A_SECOND)
    assert put.status_code == 200, put.text
    body = put.json()
    assert {k: body[k] for k in ("name", "scope", "jobType", "rate", "per", "burst", "units")} == {
        "name": "noop-10s",
        **TEN_A_SECOND,
        "units": 1,
    }
    assert (body["tokens"], body["waiting"], body["nextAdmissionAt"]) == (2, 0, None)
    changed = admin.put("/api/v1/limits/noop-10s", json={**TEN_A_SECOND, "rate": 20}).json()
    assert changed["rate"] == 20 and changed["createdAt"] == body["createdAt"]
    assert [item["name"] for item in admin.get("/api/v1/limits").json()["items"]] == ["noop-10s"]

    assert admin.delete("/api/v1/limits/noop-10s").status_code == 204
    gone = admin.get("/api/v1/limits/noop-10s")
    assert gone.status_code == 404
    assert gone.json()["code"] == "RATE_LIMIT_NOT_FOUND" and gone.json()["hint"]
    assert admin.get("/api/v1/limits").json()["items"] == []


def test_a_key_without_admin_scope_may_not_touch_limits(client: httpx.Client) -> None:
    assert client.put("/api/v1/limits/x", json=TEN_A_SECOND).status_code == 403
    assert client.get("/api/v1/limits").status_code == 403


def test_a_held_job_says_in_its_history_why_it_waits_and_metrics_count_it(
    admin: httpx.Client, client: httpx.Client
) -> None:
    assert admin.put("/api/v1/limits/noop-10s", json=TWO_THEN_ONE_AN_HOUR).status_code == 200
    jobs = [
        client.post("/api/v1/jobs", json={"type": "noop", "projectId": "p"}).json()
        for _ in range(4)
    ]
    assert [job["status"] for job in jobs] == ["scheduled", "scheduled", "pending", "pending"]
    history = client.get(f"/api/v1/jobs/{jobs[3]['id']}/history").json()["items"]
    assert history[0]["reason"] == "rate_limited: noop-10s key "
    assert history[0]["details"]["rate_limit"] == "noop-10s"
    assert jobs[3]["notBefore"] is not None

    view = admin.get("/api/v1/limits/noop-10s").json()
    assert (view["tokens"], view["waiting"]) == (0, 2)
    assert view["nextAdmissionAt"] is not None
    scraped = admin.get("/metrics").text
    assert 'jobengine_rate_limit_tokens{limit="noop-10s"} 0.0' in scraped
    assert 'jobengine_rate_limit_waiting{limit="noop-10s"} 2.0' in scraped
    assert 'jobengine_rate_limit_next_admission_timestamp_seconds{limit="noop-10s"}' in scraped


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({**TEN_A_SECOND, "rate": 0}, "rate"),
        ({**TEN_A_SECOND, "per": "fortnight"}, "per"),
        ({**TEN_A_SECOND, "burst": 0}, "burst"),
        ({**TEN_A_SECOND, "scope": "key"}, "keyed but names no key path"),
        ({**TEN_A_SECOND, "units": 3}, "units 3 is outside 1..burst"),
        ({"scope": "type", "rate": 1, "burst": 1}, "names no job type"),
        ({**TEN_A_SECOND, "colour": "red"}, "colour"),
    ],
)
def test_a_bad_limit_is_a_422_envelope_naming_what_is_wrong(
    admin: httpx.Client, body: dict[str, object], where: str
) -> None:
    refused = admin.put("/api/v1/limits/bad", json=body)
    assert refused.status_code == 422, refused.text
    envelope = refused.json()
    assert set(envelope) >= {"code", "message", "hint", "retryable"}
    assert where in envelope["message"] and envelope["hint"]
    assert admin.get("/api/v1/limits").json()["items"] == []
