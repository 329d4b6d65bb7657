"""``/api/v1/backfills`` and ``/api/v1/backfill-sources`` over a real server: dry run and
create, progress as the leader creates the jobs, list, cancel, the watermark, refusals that
name the field and write nothing, and the tenant boundary."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import Engine, text

from jobengine.maintenance.backfiller import Backfiller
from jobengine.maintenance.leadership import Leadership
from jobengine.maintenance.report import TickReport
from tests.api.conftest import LiveServer, bearer, make_key

ENVELOPE = {"code", "message", "hint", "retryable"}


def body(**over: Any) -> dict[str, Any]:
    return {
        "source": "orders",
        "projectId": "shop",
        "cron": "0 * * * *",
        "zone": "Europe/Berlin",
        "start": "2026-03-01T00:00:00Z",
        "end": "2026-03-02T00:00:00Z",
        "job": {"type": "noop", "payload": {"table": "orders"}},
        **over,
    }


def counts(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [
            int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
            for t in ("jobs", "backfills", "backfill_sources")
        ]


def leader_ticks(engine: Engine, n: int) -> None:
    leadership = Leadership(engine, "api-test-leader", 30)
    assert leadership.acquire()
    backfiller = Backfiller(engine, leadership, actor="leader")
    for _ in range(n):
        backfiller.run(TickReport(leader=True))


def test_a_dry_run_lists_the_slots_and_writes_nothing(client: httpx.Client, engine: Engine) -> None:
    answer = client.post("/api/v1/backfills", json=body(dryRun=True))
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["dryRun"] is True and got["backfill"] is None
    plan = got["plan"]
    assert (plan["slotsTotal"], plan["slotsExisting"], plan["slotsNew"]) == (24, 0, 24)
    assert plan["firstSlot"] == "2026-03-01T00:00:00Z"
    assert plan["lastSlot"] == "2026-03-01T23:00:00Z"
    assert plan["preview"][0] == {"scheduledFor": "2026-03-01T00:00:00Z", "jobId": None}
    assert counts(engine) == [0, 0, 0]


def test_a_backfill_is_created_then_its_jobs_by_the_leader_with_progress_and_watermark(
    client: httpx.Client, engine: Engine
) -> None:
    answer = client.post("/api/v1/backfills", json=body(maxInFlight=100))
    assert answer.status_code == 201, answer.text
    made = answer.json()["backfill"]
    assert made["status"] == "creating" and made["cursor"] == "2026-03-01T00:00:00Z"
    assert made["progress"]["total"] == 24 and made["progress"]["created"] == 0
    assert made["maxInFlight"] == 100 and made["job"]["type"] == "noop"
    leader_ticks(engine, 1)

    got = client.get(f"/api/v1/backfills/{made['id']}").json()
    assert got["status"] == "created" and got["cursor"] is None
    assert got["progress"] == {
        "total": 24,
        "created": 24,
        "existing": 0,
        "queued": 24,
        "running": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
    }
    listed = client.get("/api/v1/backfills", params={"source": "orders"}).json()
    assert [b["id"] for b in listed["items"]] == [made["id"]]
    [source] = client.get("/api/v1/backfill-sources").json()["items"]
    assert source["name"] == "orders" and source["watermark"] is None
    assert source["heldAt"] == "2026-03-01T00:00:00Z" and source["heldByStatus"] == "scheduled"
    assert source["lastSlot"] == "2026-03-01T23:00:00Z"

    again = client.post("/api/v1/backfills", json=body(dryRun=True)).json()["plan"]
    assert (again["slotsExisting"], again["slotsNew"]) == (24, 0)


def test_cancel_with_cancel_queued_cancels_the_jobs_not_yet_claimed(
    client: httpx.Client, engine: Engine
) -> None:
    made = client.post("/api/v1/backfills", json=body()).json()["backfill"]
    leader_ticks(engine, 1)
    answer = client.post(f"/api/v1/backfills/{made['id']}/cancel", json={"cancelQueued": True})
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["backfill"]["status"] == "cancelled" and len(got["cancelledJobIds"]) == 24
    assert got["backfill"]["progress"]["cancelled"] == 24
    again = client.post(f"/api/v1/backfills/{made['id']}/cancel").json()
    assert again["backfill"]["status"] == "cancelled" and again["cancelledJobIds"] == []


def refusal(client: httpx.Client, engine: Engine, **over: Any) -> dict[str, Any]:
    before = counts(engine)
    answer = client.post("/api/v1/backfills", json=body(**over))
    assert answer.status_code == 422, answer.text
    assert set(answer.json()) == ENVELOPE
    assert counts(engine) == before
    return dict(answer.json())


def test_refusals_name_the_field_and_write_nothing(client: httpx.Client, engine: Engine) -> None:
    ended = refusal(client, engine, end="2026-02-01T00:00:00Z")
    assert ended["code"] == "BACKFILL_INVALID" and "end" in ended["message"]
    assert "start" in ended["hint"]
    many = refusal(client, engine, cron=None, intervalSeconds=1, end="2026-03-03T00:00:00Z")
    assert many["code"] == "BACKFILL_TOO_MANY_SLOTS" and "100,000" in many["message"]
    both = refusal(client, engine, intervalSeconds=60)
    assert "cron" in both["message"] and "intervalSeconds" in both["message"]
    naive = refusal(client, engine, start="2026-03-01T00:00:00")
    assert "start" in naive["message"]
    unknown = refusal(client, engine, job={"type": "no-such-type"})
    assert "no-such-type" in unknown["message"]
    assert client.post("/api/v1/backfills", json=body()).status_code == 201
    mismatch = refusal(client, engine, cron="*/5 * * * *")
    assert mismatch["code"] == "BACKFILL_CADENCE_MISMATCH" and "orders" in mismatch["message"]


def test_another_tenants_backfill_answers_404(
    client: httpx.Client, live: LiveServer, engine: Engine
) -> None:
    made = client.post("/api/v1/backfills", json=body()).json()["backfill"]
    other = {
        **bearer(make_key(engine, "globex", "jobs:read", "jobs:write")),
        "X-Tenant-Id": "globex",
    }
    with httpx.Client(base_url=live.url, headers=other, timeout=30) as stranger:
        answer = stranger.get(f"/api/v1/backfills/{made['id']}")
        assert answer.status_code == 404 and answer.json()["code"] == "BACKFILL_NOT_FOUND"
        assert stranger.post(f"/api/v1/backfills/{made['id']}/cancel").status_code == 404
        assert stranger.get("/api/v1/backfills").json()["items"] == []
        assert stranger.get("/api/v1/backfill-sources").json()["items"] == []
