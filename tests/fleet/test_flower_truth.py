"""Flower tells what Postgres recorded: a chunk with a failed job is FAILURE and names it, a
chunk whose jobs all completed says so, an adopted plain-Celery task shows its job id, and
Flower's API answers only with its credentials."""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from jobengine import guard
from jobengine.domain.job import Job, NewJob
from jobengine.domain.status import JobStatus
from jobengine.embedded import free_loopback_port
from jobengine.fleet import publisher_app
from jobengine.producer import dispatch_ref
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import JobsRepository
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus
CREDENTIALS = "ops:s3cret-for-the-test"


def _get(port: int, path: str, credentials: str | None = CREDENTIALS) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if credentials is not None:
        token = base64.b64encode(credentials.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as refused:
        return refused.code, None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None


def _task(port: int, task_id: str, *states: str) -> dict[str, Any] | None:
    _status, tasks = _get(port, "/api/tasks")
    task = (tasks or {}).get(task_id)
    return task if task is not None and task.get("state") in states else None


def _chunk(fleet: Fleet, payloads: list[dict[str, Any]]) -> tuple[str, list[Job]]:
    with transaction(fleet.engine) as conn:
        jobs = [
            guard.create_job(conn, NewJob(type="flaky", payload=p), schedule=True) for p in payloads
        ]
    created = [job for job in jobs if job is not None]
    fleet.publisher().publish_chunk([dispatch_ref(job) for job in created])
    return f"chunk-{created[0].id}-{created[-1].id}-{len(created)}", created


def test_flower_shows_each_chunk_jobs_outcome_and_an_adopted_tasks_job_behind_its_password(
    fleet: Fleet,
) -> None:
    fleet.start_worker("w1")
    port = free_loopback_port()
    fleet.spawn(
        "flower",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "flower",
            "--address=127.0.0.1",
            f"--port={port}",
            f"--basic-auth={CREDENTIALS}",
        ],
        fleet.env(),
    )
    wait_until(lambda: _get(port, "/api/workers?refresh=1")[1], 60, "Flower lists workers")
    assert _get(port, "/api/workers", credentials=None)[0] == 401
    assert _get(port, "/api/workers", credentials="ops:wrong")[0] == 401

    failing_id, failing = _chunk(fleet, [{}, {"fail_attempts": [1]}, {}])
    seen = wait_until(lambda: _task(port, failing_id, "FAILURE"), 60, "the chunk's FAILURE")
    assert "ChunkJobsFailed" in seen["exception"]
    assert "'failed': 1" in seen["exception"] and "'completed': 2" in seen["exception"]
    assert f"'failedJobIds': [{failing[1].id}]" in seen["exception"]
    wait_until(
        lambda: all(fleet.job(j.id).status is S.COMPLETED for j in failing), 60, "retried, done"
    )
    assert [fleet.job(j.id).attempt for j in failing] == [1, 2, 1]

    passing_id, _ = _chunk(fleet, [{}, {}])
    seen = wait_until(lambda: _task(port, passing_id, "SUCCESS"), 60, "the chunk's SUCCESS")
    assert "'completed': 2" in seen["result"] and "'failed': 0" in seen["result"]

    sender = publisher_app(fleet.settings(), fleet.broker_url)
    sender.send_task("jobs.effect", kwargs={"source": "shop"}, task_id="plain-in-flower")
    seen = wait_until(lambda: _task(port, "plain-in-flower", "SUCCESS"), 60, "adopted task")
    with transaction(fleet.engine) as conn:
        found = JobsRepository(conn).find_by_idempotency_key("default", "celery:plain-in-flower")
    assert found is not None
    assert f"'jobengine_job_id': {found[0].id}" in seen["kwargs"]
    assert "'source': 'shop'" in seen["kwargs"]
