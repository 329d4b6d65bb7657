"""The API sheds load with 503 OVERLOADED and Retry-After before it times out.

Postgres is held saturated for real: the test takes an exclusive lock on ``jobs``, so a list
request sits in Postgres holding its connection and its place in flight. Past the bound on
requests in flight, or once the pool's checkout timeout passes, the next request is refused at
once with the envelope, and a submission retried with its Idempotency-Key after the lock goes
creates exactly one job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import Engine, text

from jobengine.api.app import create_app
from jobengine.store.database import make_engine
from tests.api.conftest import LiveServer, RecordingPublisher, api_settings, bearer
from tests.fleet.conftest import wait_until

ENVELOPE = {"code", "message", "hint", "retryable"}
BODY = {"type": "noop", "projectId": "p"}


@contextmanager
def jobs_locked(engine: Engine) -> Iterator[None]:
    with engine.connect() as conn:
        conn.execute(text("BEGIN; LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE"))
        try:
            yield
        finally:
            conn.execute(text("ROLLBACK"))


def waiting_on_locks(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            ).scalar_one()
        )


@contextmanager
def a_stuck_list(client: httpx.Client, engine: Engine) -> Iterator[list[httpx.Response]]:
    """A ``GET /api/v1/jobs`` held in Postgres by the lock until the block ends."""
    answers: list[httpx.Response] = []
    with jobs_locked(engine):
        stuck = threading.Thread(target=lambda: answers.append(client.get("/api/v1/jobs")))
        stuck.start()
        wait_until(lambda: waiting_on_locks(engine) >= 1, 30, "the list waiting on the lock")
        yield answers
    stuck.join(30)
    assert [a.status_code for a in answers] == [200], "the stuck request still completes"


def assert_overloaded(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert set(body) == ENVELOPE
    assert (body["code"], body["retryable"]) == ("OVERLOADED", True)
    assert body["hint"]
    assert response.headers["Retry-After"] == "1"


def jobs_with_key(engine: Engine, key: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM jobs WHERE idempotency_key = :k"), {"k": key}
            ).scalar_one()
        )


@pytest.fixture
def headers(writer_key: str) -> dict[str, str]:
    return {**bearer(writer_key), "X-Tenant-Id": "acme"}


def test_past_the_bound_in_flight_a_request_is_refused_with_503_and_retry_after_at_once(
    db_url: str, engine: Engine, headers: dict[str, str]
) -> None:
    app = create_app(
        api_settings(db_url, api_max_in_flight=1),
        engine=engine,
        publisher=RecordingPublisher(),
        revoker=None,
        broker_check=lambda: None,
    )
    with (
        LiveServer(app) as live,
        httpx.Client(base_url=live.url, headers=headers, timeout=30) as client,
    ):
        with a_stuck_list(client, engine):
            started = time.monotonic()
            refused = client.post("/api/v1/jobs", json=BODY, headers={"Idempotency-Key": "k1"})
            assert time.monotonic() - started < 1.0, "refused at once, not after a wait"
            assert_overloaded(refused)
            assert client.get("/healthz").status_code == 200, "probes are never shed"
        retried = client.post("/api/v1/jobs", json=BODY, headers={"Idempotency-Key": "k1"})
        assert retried.status_code == 201, retried.text
        replayed = client.post("/api/v1/jobs", json=BODY, headers={"Idempotency-Key": "k1"})
        assert replayed.status_code == 200
    assert jobs_with_key(engine, "k1") == 1


def test_a_pool_checkout_timeout_shorter_than_the_clients_answers_503_overloaded(
    db_url: str, engine: Engine, headers: dict[str, str]
) -> None:
    one_connection = make_engine(db_url, pool_size=1, max_overflow=0, pool_timeout=0.3)
    app = create_app(
        api_settings(db_url),
        engine=one_connection,
        publisher=RecordingPublisher(),
        revoker=None,
        broker_check=lambda: None,
    )
    try:
        with (
            LiveServer(app) as live,
            httpx.Client(base_url=live.url, headers=headers, timeout=10) as client,
        ):
            with a_stuck_list(client, engine):
                started = time.monotonic()
                refused = client.post("/api/v1/jobs", json=BODY, headers={"Idempotency-Key": "k2"})
                assert time.monotonic() - started < 3.0, "well before the client's 10 s"
                assert_overloaded(refused)
            retried = client.post("/api/v1/jobs", json=BODY, headers={"Idempotency-Key": "k2"})
            assert retried.status_code == 201, retried.text
    finally:
        one_connection.dispose()
    assert jobs_with_key(engine, "k2") == 1


def test_the_job_routes_document_the_503_with_retry_after(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    for path, method in (("/api/v1/jobs", "post"), ("/api/v1/jobs/{job_id}", "get")):
        answer = spec["paths"][path][method]["responses"]["503"]
        assert "OVERLOADED" in answer["description"]
        assert "Retry-After" in answer["headers"]
