"""Routing by type on a real fleet of workers with different handlers: each job reaches a worker
that can run it, a message that reaches one that cannot is handed back untouched, and a type no
live worker handles waits (and says so) until one starts."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from typer.testing import CliRunner

from jobengine.api.metrics import make_registry
from jobengine.cli import app as cli_app
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.fleet import publisher_app
from jobengine.producer import submit_jobs
from tests.fleet import handlers_a, handlers_b  # noqa: F401  (the producer knows both types)
from tests.fleet.conftest import Fleet, wait_until
from tests.fleet.routing_support import (
    A_ENV,
    B_ENV,
    REGISTRY_ENV,
    TTL_SECONDS,
    catalogue,
    cli_keeps_logging_alone,  # noqa: F401  (autouse)
    parent_of,
    waiting_in_broker,
)

S = JobStatus


def dead_letters(fleet: Fleet) -> int:
    with fleet.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM dead_letters")).scalar_one())


ORDERS = {
    "interleaved": ["routed_a" if i % 2 == 0 else "routed_b" for i in range(60)],
    "in-chunks": ["routed_a"] * 30 + ["routed_b"] * 30,  # a backlog: messages of 10 jobs
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_jobs_of_two_types_each_run_once_on_a_worker_with_the_handler_at_attempt_1(
    fleet: Fleet, order: str
) -> None:
    catalogue(fleet.engine, "routed_a", "routed_b")
    worker_a = fleet.start_worker("wa", concurrency=2, **A_ENV)
    worker_b = fleet.start_worker("wb", concurrency=2, **B_ENV)
    jobs = submit_jobs(
        fleet.engine, fleet.publisher(), [NewJob(type=t) for t in ORDERS[order]], chunk_size=10
    )

    wait_until(
        lambda: all(fleet.job(j.id).status is S.COMPLETED for j in jobs), 120, "all completed"
    )
    effects = fleet.effects()
    assert sorted(e[0] for e in effects) == sorted(j.id for j in jobs)  # each ran exactly once
    owner = {"routed_a": worker_a.pid, "routed_b": worker_b.pid}
    type_of = {j.id: j.type for j in jobs}
    for job_id, attempt, what, pid in effects:
        assert what == type_of[job_id] and attempt == 1
        assert parent_of(pid) == owner[what], f"job {job_id} ran on the wrong worker"
    assert all(fleet.job(j.id).attempt == 1 for j in jobs)
    assert dead_letters(fleet) == 0
    logs = fleet.log_of("wa") + fleet.log_of("wb")
    assert "handed_back" not in logs  # none went astray
    assert ("[chunk-" in logs) is (order == "in-chunks")


def test_a_plain_celery_message_for_type_b_taken_by_worker_a_is_handed_back_and_run_by_worker_b(
    fleet: Fleet,
) -> None:
    catalogue(fleet.engine, "routed_a", "routed_b")
    fleet.start_worker("wa", **A_ENV)  # consumes `default`, where plain producers' messages land
    publisher_app(fleet.settings(), fleet.broker_url).send_task(
        "jobs.routed_b", kwargs={"order": 7}, task_id="plain-b-1", queue="default", priority=3
    )

    wait_until(lambda: "handed_back" in fleet.log_of("wa"), 60, "worker a hands it back")
    assert waiting_in_broker(fleet.broker_url, "jobs.routed_b") == 1
    assert redis.Redis.from_url(fleet.broker_url).llen("jobs.routed_b:3") == 1  # its priority
    with fleet.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 0  # untouched
    worker_b = fleet.start_worker("wb", **B_ENV)

    def adopted() -> Any:
        with fleet.engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT id, status, attempt, payload FROM jobs "
                    "WHERE idempotency_key = 'celery:plain-b-1' AND status = 'completed'"
                )
            ).first()

    row = wait_until(adopted, 60, "worker b runs it")
    assert row.attempt == 1 and row.payload == {"order": 7}
    [(_, attempt, what, pid)] = fleet.effects(row.id)
    assert (attempt, what, parent_of(pid)) == (1, "routed_b", worker_b.pid)
    assert dead_letters(fleet) == 0


def _stuck(fleet: Fleet) -> dict[str, Any]:
    result = CliRunner().invoke(
        cli_app,
        ["jobs", "stuck", "--json"],
        env={"JOBENGINE_DATABASE_URL": fleet.db_url, **REGISTRY_ENV},
    )
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _metrics(fleet: Fleet) -> dict[tuple[str, str], float]:
    body = generate_latest(make_registry(fleet.engine, TTL_SECONDS)).decode()
    return {
        (s.name, s.labels.get("type", s.labels.get("state", ""))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def test_a_type_no_live_worker_handles_is_shown_in_jobs_stuck_and_metrics_then_runs_once_one_starts(
    fleet: Fleet,
) -> None:
    catalogue(fleet.engine, "routed_a", "routed_b")
    fleet.start_worker("wa", **A_ENV, **REGISTRY_ENV)
    jobs = submit_jobs(fleet.engine, fleet.publisher(), [NewJob(type="routed_b")] * 3)

    def unhandled() -> list[dict[str, Any]]:
        return [t for t in _stuck(fleet)["typesWithoutWorker"] if t["type"] == "routed_b"]

    [entry] = wait_until(unhandled, 30, "routed_b reported without a worker")
    text_out = CliRunner().invoke(
        cli_app, ["jobs", "stuck"], env={"JOBENGINE_DATABASE_URL": fleet.db_url, **REGISTRY_ENV}
    )
    assert "no live worker handles type 'routed_b': 3 job(s) waiting" in text_out.stdout
    assert entry["waiting"] == 3 and entry["oldestWaitingSeconds"] >= 0
    assert entry["message"].startswith("no live worker handles type 'routed_b': 3 job(s)")
    got = _metrics(fleet)
    assert got[("jobengine_types_without_worker", "routed_b")] == 3
    assert got[("jobengine_types_without_worker_oldest_seconds", "routed_b")] >= 0
    assert ("jobengine_types_without_worker", "routed_a") not in got
    assert got[("jobengine_workers", "live")] == 1
    assert waiting_in_broker(fleet.broker_url, "jobs.routed_b") == 3  # waiting, not lost
    assert all(fleet.job(j.id).status is S.SCHEDULED for j in jobs)

    fleet.start_worker("wb", **B_ENV, **REGISTRY_ENV)
    wait_until(
        lambda: all(fleet.job(j.id).status is S.COMPLETED for j in jobs), 60, "all completed"
    )
    assert all(fleet.job(j.id).attempt == 1 for j in jobs)
    assert unhandled() == []
    assert ("jobengine_types_without_worker", "routed_b") not in _metrics(fleet)
    assert dead_letters(fleet) == 0
