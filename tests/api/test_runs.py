"""``/api/v1/runs`` over a real server: submit with a graph, refusals that write nothing, reads,
lists, cancel, the tenant boundary, and the run's event stream."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import Engine, text

from tests.api.conftest import LiveServer, RecordingPublisher, bearer, make_key
from tests.api.sse import Message, messages

ENVELOPE = {"code", "message", "hint", "retryable"}


def diamond(name: str = "diamond", project: str = "p", **job: Any) -> dict[str, Any]:
    return {
        "name": name,
        "projectId": project,
        "jobs": [{"key": key, "type": "noop", **job} for key in ("A", "B", "C", "D")],
        "edges": [
            {"parent": "A", "child": "B"},
            {"parent": "A", "child": "C"},
            {"parent": "B", "child": "D"},
            {"parent": "C", "child": "D"},
        ],
    }


def submit(client: httpx.Client, body: dict[str, Any], **headers: str) -> httpx.Response:
    return client.post("/api/v1/runs", json=body, headers=headers)


def counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("runs", "jobs", "job_edges")
        )


def test_a_diamond_is_created_with_its_graph_and_only_its_root_is_published(
    client: httpx.Client, publisher: RecordingPublisher
) -> None:
    response = submit(client, diamond())
    assert response.status_code == 201, response.text
    run = response.json()
    assert (run["tenantId"], run["projectId"], run["name"], run["status"]) == (
        "acme", "p", "diamond", "running",
    )  # fmt: skip
    assert run["jobsTotal"] == 4 and run["jobsCompleted"] == 0
    by_key = {job["key"]: job for job in run["jobs"]}
    assert {k: j["status"] for k, j in by_key.items()} == {
        "A": "scheduled", "B": "pending", "C": "pending", "D": "pending",
    }  # fmt: skip
    assert set(by_key["A"]) == {
        "id", "key", "type", "queue", "status", "attempt", "triggerRule", "hasResult",
        "lastError", "createdAt", "startedAt", "completedAt",
    }  # fmt: skip
    assert sorted((e["parent"], e["child"]) for e in run["edges"]) == [
        ("A", "B"), ("A", "C"), ("B", "D"), ("C", "D"),
    ]  # fmt: skip
    for edge in run["edges"]:
        assert (edge["parentId"], edge["childId"]) == (
            by_key[edge["parent"]]["id"], by_key[edge["child"]]["id"],
        )  # fmt: skip
    assert publisher.sent == [by_key["A"]["id"]]
    again = client.get(f"/api/v1/runs/{run['id']}")
    assert again.status_code == 200 and again.json() == run


def test_a_cycle_an_unknown_key_and_a_duplicate_key_are_422_naming_them_and_write_nothing(
    client: httpx.Client, engine: Engine, publisher: RecordingPublisher
) -> None:
    cycle = diamond()
    cycle["edges"].append({"parent": "D", "child": "A"})
    unknown = diamond()
    unknown["edges"].append({"parent": "C", "child": "Z"})
    duplicate = diamond()
    duplicate["jobs"].append({"key": "B", "type": "noop"})
    bad_type = diamond()
    bad_type["jobs"][3]["type"] = "no_such_type"
    for body, code, named in (
        (cycle, "RUN_CYCLE", "D -> A"),
        (unknown, "UNKNOWN_RUN_KEY", "'Z'"),
        (duplicate, "DUPLICATE_RUN_KEY", "'B'"),
        (bad_type, "UNKNOWN_JOB_TYPE", "no_such_type"),
    ):
        response = submit(client, body)
        assert response.status_code == 422, response.text
        error = response.json()
        assert set(error) == ENVELOPE and error["code"] == code, error
        assert named in error["message"] and error["hint"], error
    assert counts(engine) == (0, 0, 0)
    assert publisher.sent == []


def test_the_same_idempotency_key_replays_the_run_and_another_body_conflicts(
    client: httpx.Client, engine: Engine
) -> None:
    first = submit(client, diamond(), **{"Idempotency-Key": "nightly-1"})
    assert first.status_code == 201, first.text
    again = submit(client, diamond(), **{"Idempotency-Key": "nightly-1"})
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = submit(client, diamond(name="other"), **{"Idempotency-Key": "nightly-1"})
    assert other.status_code == 409 and set(other.json()) == ENVELOPE
    assert counts(engine) == (1, 4, 4)


def test_runs_are_listed_by_status_project_and_name_a_page_at_a_time(
    client: httpx.Client,
) -> None:
    ids = [submit(client, diamond(name=f"r{i}", project="p" if i < 3 else "q")).json()["id"]
           for i in range(4)]  # fmt: skip
    assert client.post(f"/api/v1/runs/{ids[0]}/cancel").status_code == 200
    first = client.get("/api/v1/runs", params={"limit": 2})
    assert first.status_code == 200
    page = first.json()
    assert [r["id"] for r in page["items"]] == ids[:2] and page["nextCursor"]
    rest = client.get("/api/v1/runs", params={"limit": 2, "cursor": page["nextCursor"]}).json()
    assert [r["id"] for r in rest["items"]] == ids[2:] and rest["nextCursor"] is None

    def listed(**params: str) -> list[int]:
        return [r["id"] for r in client.get("/api/v1/runs", params=params).json()["items"]]

    assert listed(status="cancelled") == [ids[0]]
    assert listed(status="running") == ids[1:]
    assert listed(projectId="q") == [ids[3]]
    assert listed(name="r2") == [ids[2]]
    jobs_cursor = client.get("/api/v1/jobs", params={"limit": 1}).json()["nextCursor"]
    refused = client.get("/api/v1/runs", params={"cursor": jobs_cursor})
    assert refused.status_code == 422 and refused.json()["code"] == "BAD_CURSOR"


def test_cancel_cancels_every_job_not_final_and_cancelling_again_changes_nothing(
    client: httpx.Client,
) -> None:
    run = submit(client, diamond()).json()
    response = client.post(f"/api/v1/runs/{run['id']}/cancel")
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "cancelled" and cancelled["jobsCancelled"] == 4
    assert {job["status"] for job in cancelled["jobs"]} == {"cancelled"}
    assert sorted(cancelled["cancelledJobIds"]) == sorted(job["id"] for job in run["jobs"])
    again = client.post(f"/api/v1/runs/{run['id']}/cancel")
    assert again.status_code == 200 and again.json()["cancelledJobIds"] == []


def test_another_tenants_run_is_404_and_a_read_only_key_may_not_submit_or_cancel(
    client: httpx.Client, live: LiveServer, engine: Engine
) -> None:
    run = submit(client, diamond()).json()
    other = {
        **bearer(make_key(engine, "globex", "jobs:read", "jobs:write")),
        "X-Tenant-Id": "globex",
    }
    reader = {**bearer(make_key(engine, "acme", "jobs:read")), "X-Tenant-Id": "acme"}
    with httpx.Client(base_url=live.url, timeout=30) as http:
        for method, path in (
            ("GET", f"/api/v1/runs/{run['id']}"),
            ("POST", f"/api/v1/runs/{run['id']}/cancel"),
            ("GET", f"/api/v1/runs/{run['id']}/events"),
        ):
            response = http.request(method, path, headers=other)
            assert response.status_code == 404, (path, response.text)
            assert response.json()["code"] == "RUN_NOT_FOUND"
        assert http.get("/api/v1/runs", headers=other).json()["items"] == []
        assert http.post("/api/v1/runs", json=diamond(), headers=reader).status_code == 403
        cancel = http.post(f"/api/v1/runs/{run['id']}/cancel", headers=reader)
        assert cancel.status_code == 403
    assert client.get(f"/api/v1/runs/{run['id']}").json()["status"] == "running"


def test_a_run_with_a_command_type_needs_the_jobs_command_scope(
    live: LiveServer, engine: Engine
) -> None:
    body = diamond()
    body["jobs"][1] = {"key": "B", "type": "shell", "payload": {"command": ["true"]}}
    plain = {**bearer(make_key(engine, "acme", "jobs:write")), "X-Tenant-Id": "acme"}
    commander = {
        **bearer(make_key(engine, "acme", "jobs:write", "jobs:command")),
        "X-Tenant-Id": "acme",
    }
    with httpx.Client(base_url=live.url, timeout=30) as http:
        refused = http.post("/api/v1/runs", json=body, headers=plain)
        assert refused.status_code == 403 and "jobs:command" in refused.json()["message"]
        assert counts(engine) == (0, 0, 0)
        assert http.post("/api/v1/runs", json=body, headers=commander).status_code == 201


def events_of(client: httpx.Client, run_id: int, **headers: str) -> list[Message]:
    """Every message of a run's stream until the server ends it (the run is final)."""
    with client.stream("GET", f"/api/v1/runs/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200
        return [m for m in messages(response) if m.data is not None]


def test_the_run_stream_carries_its_jobs_events_then_its_final_status_and_ends(
    client: httpx.Client, engine: Engine
) -> None:
    other = submit(client, diamond(name="other")).json()
    run = submit(client, diamond()).json()
    client.post(f"/api/v1/runs/{run['id']}/cancel")
    client.post(f"/api/v1/runs/{other['id']}/cancel")
    got = events_of(client, run["id"])
    transitions = [m for m in got if m.event == "job.transition"]
    with engine.connect() as conn:
        history = conn.execute(
            text(
                "SELECT h.job_id FROM job_history AS h JOIN jobs AS j ON j.id = h.job_id"
                " WHERE j.run_id = :run ORDER BY h.id"
            ),
            {"run": run["id"]},
        ).scalars()
        assert [(m.data or {})["event"]["jobId"] for m in transitions] == list(history)
    cancelled = [m for m in transitions if (m.data or {})["event"]["toStatus"] == "cancelled"]
    assert len(cancelled) == 4
    assert got[-1].event == "run.status" and (got[-1].data or {})["status"] == "cancelled"
    assert [m.event for m in got].count("run.status") == 1
    middle = transitions[3].id
    assert middle is not None
    resumed = events_of(client, run["id"], **{"Last-Event-ID": middle})
    assert [m.id for m in resumed if m.event == "job.transition"] == [m.id for m in transitions[4:]]


def test_metrics_count_runs_by_status(client: httpx.Client, live: LiveServer) -> None:
    first = submit(client, diamond()).json()
    submit(client, diamond(name="second"))
    client.post(f"/api/v1/runs/{first['id']}/cancel")
    scraped = httpx.get(f"{live.url}/metrics", timeout=30).text
    assert 'jobengine_runs{status="running"} 1.0' in scraped
    assert 'jobengine_runs{status="cancelled"} 1.0' in scraped
    assert 'jobengine_runs{status="completed"} 0.0' in scraped
