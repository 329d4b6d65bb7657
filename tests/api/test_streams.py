"""Event streams over a real server: resume with Last-Event-ID loses nothing and repeats
nothing, even across a transaction that took an outbox id early and committed late."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Connection, Engine, text
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from jobengine.api.app import create_app
from jobengine.store.database import transaction
from jobengine.store.outbox import OutboxReader, Position, StreamScope
from tests.api.conftest import LiveServer, RecordingPublisher, api_settings, bearer, make_key
from tests.api.sse import Message, messages


@pytest.fixture
def app(db_url: str, engine: Engine, publisher: RecordingPublisher) -> FastAPI:
    """Heartbeats every 0.2 s: a heartbeat proves the stream polled and found nothing."""
    return create_app(
        api_settings(db_url, stream_heartbeat_seconds=0.2),
        engine=engine,
        publisher=publisher,
        revoker=None,
        broker_check=lambda: None,
    )


def progress_event(conn: Connection, job_id: int, n: int) -> None:
    conn.execute(
        text(
            "INSERT INTO job_events (job_id, tenant_id, type, version, data) "
            "VALUES (:job, 'acme', 'job.progress', 1, CAST(:data AS jsonb))"
        ),
        {"job": job_id, "data": json.dumps({"job_id": job_id, "attempt": 0, "progress": {"n": n}})},
    )


def take(stream: Iterator[Message], n: int) -> list[Message]:
    """The next ``n`` events, skipping heartbeats."""
    got: list[Message] = []
    while len(got) < n:
        message = next(stream)
        if message.data is not None:
            got.append(message)
    return got


def next_heartbeat(stream: Iterator[Message]) -> None:
    while next(stream).data is not None:
        raise AssertionError("an event arrived where only a heartbeat was expected")


def label(m: Message) -> Any:
    assert m.data is not None
    event = m.data["event"]
    return event.get("toStatus") or event["progress"]["n"]


def test_resume_across_a_late_commit_has_no_gap_and_no_duplicate(
    live: LiveServer, client: httpx.Client, engine: Engine
) -> None:
    job_id = client.post("/api/v1/jobs", json={"type": "noop", "projectId": "p"}).json()["id"]
    other_id = client.post("/api/v1/jobs", json={"type": "noop", "projectId": "p"}).json()["id"]
    url = "/api/v1/events"
    with client.stream("GET", url, params={"after": "0-0"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        first = take(messages(response), 2)
    assert [label(m) for m in first] == ["scheduled"] * 2
    assert all(m.event == "job.transition" for m in first)

    late = engine.connect()
    late_tx = late.begin()
    # Takes its outbox id (and txid) now, commits last. It writes for the other job, whose
    # row the cancel below does not lock.
    progress_event(late, other_id, 1)
    with engine.begin() as conn:
        progress_event(conn, job_id, 2)
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 200
    with transaction(engine) as conn:  # the early-committed events are held back meanwhile
        pending = OutboxReader(conn).page(
            StreamScope(tenant_id="acme"), Position.parse(first[-1].id or "")
        )
        assert pending == []

    with client.stream("GET", url, headers={"Last-Event-ID": first[-1].id or ""}) as response:
        stream = messages(response)
        next_heartbeat(stream)  # connected, polled, and delivered nothing past the open one
        late_tx.commit()
        late.close()
        rest = take(stream, 3)
    assert [label(m) for m in rest] == [1, 2, "cancelled"]
    positions = [Position.parse(m.id or "") for m in first + rest]
    assert positions == sorted(positions) and len(set(positions)) == 5
    ids = [m.data["id"] for m in rest if m.data]
    assert ids[0] < ids[1]  # the late one has the lower outbox id, yet came first: (txid, id)

    with engine.begin() as conn:
        progress_event(conn, job_id, 3)
    with client.stream("GET", url, headers={"Last-Event-ID": rest[-1].id or ""}) as response:
        [after] = take(messages(response), 1)
    assert label(after) == 3


def test_a_job_stream_ends_after_the_final_state(client: httpx.Client) -> None:
    job_id = client.post("/api/v1/jobs", json={"type": "noop", "projectId": "p"}).json()["id"]
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 200
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as response:
        events = [m for m in messages(response) if m.data is not None]
    assert [label(m) for m in events] == ["scheduled", "cancelled"]
    with client.stream(
        "GET", f"/api/v1/jobs/{job_id}/events", params={"after": events[-1].id}
    ) as response:
        assert [m for m in messages(response) if m.data is not None] == []


def test_a_feed_without_resume_point_starts_now(client: httpx.Client) -> None:
    client.post("/api/v1/jobs", json={"type": "noop", "projectId": "old"})
    with client.stream("GET", "/api/v1/events") as response:
        stream = messages(response)
        next_heartbeat(stream)
        new = client.post("/api/v1/jobs", json={"type": "noop", "projectId": "new"}).json()
        got = take(stream, 1)
    assert {m.data["event"]["jobId"] for m in got if m.data} == {new["id"]}


def test_bad_last_event_id_is_422(client: httpx.Client) -> None:
    response = client.get("/api/v1/events", headers={"Last-Event-ID": "nonsense"})
    assert response.status_code == 422 and response.json()["code"] == "BAD_EVENT_ID"


def test_websocket_carries_the_same_events(
    live: LiveServer, client: httpx.Client, engine: Engine, writer_key: str
) -> None:
    job_id = client.post("/api/v1/jobs", json={"type": "noop", "projectId": "p"}).json()["id"]
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 200
    ws_url = live.url.replace("http", "ws") + "/api/v1/ws/events"
    frames: list[dict[str, Any]] = []
    with connect(f"{ws_url}?jobId={job_id}", additional_headers=bearer(writer_key)) as ws:
        for raw in ws:
            frames.append(json.loads(raw))
    assert [f["data"]["event"]["toStatus"] for f in frames] == [
        "scheduled",
        "cancelled",
    ]
    assert all(f["event"] == "job.transition" for f in frames)
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as response:
        assert [m.id for m in messages(response) if m.data] == [f["id"] for f in frames]

    other = make_key(engine, "globex", "jobs:read")
    with connect(f"{ws_url}?jobId={job_id}&token={other}") as ws:
        refusal = json.loads(ws.recv())
        with pytest.raises(ConnectionClosed):
            ws.recv()
    assert refusal["error"]["code"] == "JOB_NOT_FOUND"
    assert ws.close_code == 4404


def keys_of(value: Any) -> set[str]:
    """Every key of a stream frame's envelope and event (not of payload-like ``details``)."""
    return set(value) | set(value["event"])


def test_stream_data_names_its_fields_in_camel_case_as_rest_does(
    live: LiveServer, client: httpx.Client, writer_key: str
) -> None:
    job_id = client.post("/api/v1/jobs", json={"type": "noop", "projectId": "p"}).json()["id"]
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 200
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as response:
        sse_data = [m.data for m in messages(response) if m.data is not None]
    ws_url = live.url.replace("http", "ws") + "/api/v1/ws/events"
    with connect(f"{ws_url}?jobId={job_id}", additional_headers=bearer(writer_key)) as ws:
        ws_data = [json.loads(raw)["data"] for raw in ws]
    assert sse_data == ws_data
    names = set().union(*(keys_of(d) for d in sse_data))
    assert {"tenantId", "occurredAt", "jobId", "historyId", "fromStatus", "toStatus"} <= names
    assert not [name for name in names if "_" in name]
