"""Flower, run as ``jobengine flower`` runs it, watches the real fleet: workers and tasks
through its HTTP API; its revoke cancels the job in Postgres too, signed by Flower's user."""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.request
from typing import Any

import redis
from sqlalchemy import text

from jobengine import revoke_origins
from jobengine.dispatch import task_id_for
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.embedded import free_loopback_port
from jobengine.producer import submit_jobs
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus
LOGIN = "ops:flower-secret"
AUTH = {"Authorization": "Basic " + base64.b64encode(LOGIN.encode()).decode()}


def _api(port: int, path: str, method: str = "GET") -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=AUTH)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read() or b"null")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def test_flower_sees_workers_and_tasks_and_its_revoke_cancels_the_job_as_its_user(
    fleet: Fleet,
) -> None:
    fleet.start_worker("w1")
    port = free_loopback_port()
    fleet.spawn(
        "flower",
        [
            sys.executable,
            "-m",
            "jobengine.flower_app",
            "--address=127.0.0.1",
            f"--port={port}",
            f"--basic-auth={LOGIN}",
        ],
        fleet.env(),
    )
    workers = wait_until(
        lambda: (_api(port, "/api/workers?refresh=1") or {}) or None, 60, "Flower lists workers"
    )
    assert any(name.startswith("w1@") for name in workers)

    [done] = submit_jobs(fleet.engine, fleet.publisher(), [NewJob(type="effect")])
    wait_until(lambda: fleet.job(done.id).status is S.COMPLETED, 60, "completed")
    task_id = task_id_for(done.id, 1)
    seen = wait_until(
        lambda: (
            (_api(port, "/api/tasks") or {}).get(task_id, {}).get("state") == "SUCCESS"
            and _api(port, "/api/tasks")[task_id]
        ),
        60,
        "Flower saw the finished task",
    )
    assert seen["name"] == "jobs.effect"
    assert str(done.id) in seen["args"]

    [running] = submit_jobs(
        fleet.engine, fleet.publisher(), [NewJob(type="blocking", payload={"block_attempts": [1]})]
    )
    wait_until(lambda: fleet.job(running.id).status is S.RUNNING, 60, "running")
    revoked = task_id_for(running.id, 1)
    answer = _api(port, f"/api/task/revoke/{revoked}?terminate=true", method="POST")
    assert answer == {"message": f"Revoked '{revoked}'"}
    wait_until(lambda: fleet.job(running.id).status is S.CANCELLED, 60, "cancelled via Flower")
    assert fleet.history(running.id)[-1].actor == "flower:ops"
    with fleet.engine.connect() as conn:  # one entry, Flower's user's, with the client address
        filed = conn.execute(
            text(
                "SELECT actor, surface, action, object_id, outcome, client_addr "
                "FROM audit_entries ORDER BY id"
            )
        ).all()
    assert [tuple(e) for e in filed] == [
        ("flower:ops", "flower", "job.cancel", str(running.id), "done", "127.0.0.1")
    ]
    broker = redis.Redis.from_url(fleet.broker_url)
    assert broker.exists(revoke_origins.KEY_PREFIX + revoked) == 0  # the note was taken
