"""Traces end to end with real processes: an API process and a Celery worker export to an
OTLP/HTTP receiver on loopback; one job's producer span (in the API) and each attempt's
consumer span (in the worker) are one trace, the consumer linked to the producer."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from jobengine.embedded import free_loopback_port
from tests.api.conftest import bearer, make_key
from tests.fleet.conftest import REPO, Fleet, wait_until
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"
"""A caller's context, as the Python client (or any traced service) sends it."""


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server


def tracing_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}


def start_api(fleet: Fleet, **env: str) -> httpx.Client:
    port = free_loopback_port()
    proc = fleet.spawn(
        "api",
        [sys.executable, "-m", "jobengine.api"],
        fleet.env(JOBENGINE_API_PORT=str(port), **env),
    )
    key = make_key(fleet.engine, "acme", "jobs:read", "jobs:write")
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={**bearer(key), "X-Tenant-Id": "acme"},
        timeout=30,
    )

    def ready() -> bool:
        assert proc.poll() is None, fleet.log_of("api")
        try:
            return client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, 60, "API serving")
    return client


def submit(client: httpx.Client, job_type: str, payload: dict[str, object]) -> int:
    created = client.post(
        "/api/v1/jobs",
        json={"type": job_type, "projectId": "traces", "payload": payload},
        headers={"traceparent": CALLER_TRACEPARENT},
    )
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def consumers_of(receiver: OtlpReceiver, job_id: int, attempts: int) -> list[ReceivedSpan]:
    found = wait_until(
        lambda: (
            spans
            if len(spans := receiver.named("SPAN_KIND_CONSUMER", **{"jobengine.job.id": job_id}))
            >= attempts
            else None
        ),
        60,
        f"{attempts} consumer span(s) of job {job_id}",
    )
    return sorted(found, key=lambda s: s.attributes["jobengine.job.attempt"])


def producer_of(receiver: OtlpReceiver, job_id: int) -> ReceivedSpan:
    [producer] = wait_until(
        lambda: receiver.named("SPAN_KIND_PRODUCER", **{"jobengine.job.id": job_id}),
        30,
        f"producer span of job {job_id}",
    )
    return producer


def job_traceparent(fleet: Fleet, job_id: int) -> str | None:
    return fleet.job(job_id).traceparent


def ancestor(receiver: OtlpReceiver, span: ReceivedSpan, kind: str) -> ReceivedSpan:
    """The nearest span of ``kind`` above ``span`` (FastAPI may add spans in between)."""
    by_id = {s.span_id: s for s in receiver.spans}
    at = span
    while at.kind != kind:
        at = by_id[at.parent_span_id]
    return at


@pytest.mark.slow
def test_rest_jobs_retries_runs_the_client_and_enqueue_each_trace_to_where_their_jobs_run(
    fleet: Fleet, receiver: OtlpReceiver
) -> None:
    """One API process and one worker for the three cases: each process costs seconds."""
    fleet.start_worker("w1", **tracing_env(receiver))
    client = start_api(fleet, **tracing_env(receiver))
    plain = submit(client, "noop", {})
    retried = submit(client, "flaky", {"fail_attempts": [1]})
    run = submit_run(client)
    via_client, via_enqueue = traced_producer(fleet, client, receiver)
    a_rest_job_is_one_trace_from_the_api_to_the_workers_run(fleet, receiver, plain)
    a_retried_jobs_second_attempt_links_to_the_same_producer_span(receiver, retried)
    a_runs_jobs_link_to_the_runs_submit_span(fleet, receiver, run)
    the_python_clients_span_is_the_apis_callers_and_enqueue_makes_a_producer_span(
        fleet, receiver, via_client, via_enqueue
    )


PRODUCER = """
import json, sys
from sqlalchemy.orm import Session
from jobengine import tracing
from jobengine.client import JobEngineClient
from jobengine.enqueue import enqueue
from jobengine.store.database import make_engine

assert tracing.configure("producer-probe")
api, key, db = sys.argv[1:4]
with JobEngineClient(api, api_key=key, tenant_id="acme") as client:
    via_client = client.create("noop", {}, project_id="traces").id
engine = make_engine(db)
with Session(engine) as session:
    via_enqueue = enqueue(session, "noop", {}, tenant_id="acme", project_id="traces").id
    session.commit()
tracing.flush()
print(json.dumps([via_client, via_enqueue]))
"""


def traced_producer(fleet: Fleet, client: httpx.Client, receiver: OtlpReceiver) -> tuple[int, int]:
    """A producer service with tracing on: a job through the Python client, one enqueued."""
    key = client.headers["Authorization"].removeprefix("Bearer ")
    argv = [sys.executable, "-c", PRODUCER, str(client.base_url), key, fleet.db_url]
    done = subprocess.run(
        argv, env=fleet.env(**tracing_env(receiver)), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    via_client, via_enqueue = json.loads(done.stdout.strip().splitlines()[-1])
    return int(via_client), int(via_enqueue)


def the_python_clients_span_is_the_apis_callers_and_enqueue_makes_a_producer_span(
    fleet: Fleet, receiver: OtlpReceiver, via_client: int, via_enqueue: int
) -> None:
    server = ancestor(receiver, producer_of(receiver, via_client), "SPAN_KIND_SERVER")
    [caller] = [s for s in receiver.spans if s.span_id == server.parent_span_id]
    assert (caller.service, caller.kind, caller.name) == (
        "producer-probe",
        "SPAN_KIND_CLIENT",
        "POST",
    )
    assert caller.attributes["url.path"] == "/api/v1/jobs"
    enqueued = producer_of(receiver, via_enqueue)
    assert (enqueued.service, enqueued.name) == ("producer-probe", "submit default")
    assert enqueued.attributes["jobengine.actor"] == "enqueue"
    assert enqueued.is_named_by(job_traceparent(fleet, via_enqueue))


def submit_run(client: httpx.Client) -> dict[str, int]:
    body = {
        "name": "traced",
        "projectId": "traces",
        "jobs": [{"key": "parent", "type": "noop"}, {"key": "child", "type": "noop"}],
        "edges": [{"parent": "parent", "child": "child"}],
    }
    created = client.post("/api/v1/runs", json=body, headers={"traceparent": CALLER_TRACEPARENT})
    assert created.status_code == 201, created.text
    return {job["key"]: job["id"] for job in created.json()["jobs"]}


def a_rest_job_is_one_trace_from_the_api_to_the_workers_run(
    fleet: Fleet, receiver: OtlpReceiver, job_id: int
) -> None:
    [consumer] = consumers_of(receiver, job_id, 1)
    producer = producer_of(receiver, job_id)
    server = ancestor(receiver, producer, "SPAN_KIND_SERVER")

    assert (server.service, server.name, server.trace_id) == (
        "jobengine-api",
        "POST /api/v1/jobs",
        CALLER_TRACE,
    )
    assert server.parent_span_id == CALLER_TRACEPARENT.split("-")[2]
    assert (producer.service, producer.name) == ("jobengine-api", "submit default")
    assert producer.attributes["messaging.system"] == "jobengine"
    assert producer.is_named_by(job_traceparent(fleet, job_id))

    assert (consumer.service, consumer.name) == ("jobengine-worker", "process default")
    assert [(link.trace_id, link.span_id) for link in consumer.links] == [
        (producer.trace_id, producer.span_id)
    ]
    assert (consumer.trace_id, consumer.parent_span_id) == (producer.trace_id, producer.span_id)
    assert consumer.attributes == {
        "messaging.system": "jobengine",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "default",
        "messaging.message.id": f"job-{job_id}-1",
        "jobengine.job.id": job_id,
        "jobengine.job.type": "noop",
        "jobengine.job.attempt": 1,
        "jobengine.outcome": "completed",
    }


def a_retried_jobs_second_attempt_links_to_the_same_producer_span(
    receiver: OtlpReceiver, job_id: int
) -> None:
    first, second = consumers_of(receiver, job_id, 2)
    producer = producer_of(receiver, job_id)

    assert [s.attributes["jobengine.job.attempt"] for s in (first, second)] == [1, 2]
    assert [s.attributes["jobengine.outcome"] for s in (first, second)] == ["retry", "completed"]
    for attempt in (first, second):
        assert [(x.trace_id, x.span_id) for x in attempt.links] == [
            (producer.trace_id, producer.span_id)
        ]
    assert first.span_id != second.span_id
    [record] = [
        s for s in receiver.spans if s.name == "record" and s.parent_span_id == first.span_id
    ]
    assert record.attributes["jobengine.job.id"] == job_id


def a_runs_jobs_link_to_the_runs_submit_span(
    fleet: Fleet, receiver: OtlpReceiver, ids: dict[str, int]
) -> None:
    """The child, promoted when its parent completed, links to the run's submit span too."""
    [parent] = consumers_of(receiver, ids["parent"], 1)
    [child] = consumers_of(receiver, ids["child"], 1)
    [submit_run] = [s for s in receiver.named("SPAN_KIND_PRODUCER") if s.name == "submit_run"]
    assert submit_run.trace_id == CALLER_TRACE
    for consumer in (parent, child):
        assert [(x.trace_id, x.span_id) for x in consumer.links] == [
            (submit_run.trace_id, submit_run.span_id)
        ]
    assert submit_run.is_named_by(job_traceparent(fleet, ids["child"]))


@pytest.mark.slow
def test_with_no_endpoint_set_nothing_is_sent_and_no_job_stores_a_trace_context(
    fleet: Fleet, receiver: OtlpReceiver
) -> None:
    fleet.start_worker("w1")
    client = start_api(fleet)
    job_id = submit(client, "noop", {})
    wait_until(lambda: fleet.job(job_id).status.value == "completed", 60, "completed")
    fleet.stop_all()  # exporters would flush now, if there were any
    assert (receiver.requests, receiver.spans) == (0, [])
    assert job_traceparent(fleet, job_id) is None


PROBE = """
import sys, threading
from jobengine import tracing
print(tracing.configure("probe"), "opentelemetry.sdk" in sys.modules,
      any("BatchSpanProcessor" in t.name or "OtelBatch" in t.name for t in threading.enumerate()))
"""


def test_tracing_is_off_without_an_endpoint_no_sdk_loaded_and_no_exporter_thread(
    receiver: OtlpReceiver,
) -> None:
    def probe(**env: str) -> str:
        clean = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
        done = subprocess.run(
            [sys.executable, "-c", PROBE],
            env={**clean, "PYTHONPATH": str(REPO), **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.strip()

    assert probe() == "False False False"
    assert probe(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_TRACES_EXPORTER="none") == (
        "False False False"
    )
    assert probe(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint) == "True True True"
