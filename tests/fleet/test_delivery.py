"""Messages are hints, the claim decides: duplicates and plain Celery producers."""

from __future__ import annotations

import subprocess
import sys

import redis

from jobengine.dispatch import PROJECT_HEADER, TENANT_HEADER
from jobengine.domain.job import Job, NewJob
from jobengine.domain.status import FINAL_STATES, JobStatus
from jobengine.fleet import publisher_app
from jobengine.producer import dispatch_ref, submit_jobs
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import JobsRepository
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import REPO, Fleet, wait_until

S = JobStatus


def broker_idle(url: str) -> bool:
    """No message waiting in any queue and none delivered but unacknowledged."""
    client = redis.Redis.from_url(url)
    waiting = sum(client.llen(k) for k in client.keys("default*"))
    return waiting == 0 and client.hlen("unacked") == 0


def test_duplicate_delivery_runs_the_handler_once(fleet: Fleet) -> None:
    fleet.start_worker("w1", concurrency=2)
    publisher = fleet.publisher()
    [job] = submit_jobs(fleet.engine, publisher, [NewJob(type="effect")])
    publisher.publish(dispatch_ref(job))
    publisher.publish(dispatch_ref(job))

    wait_until(lambda: fleet.job(job.id).status is S.COMPLETED, 60, "completed")
    wait_until(
        lambda: fleet.log_of("w1").count("claim_refused") == 2, 60, "both duplicates refused"
    )
    wait_until(lambda: broker_idle(fleet.broker_url), 60, "all three messages consumed")
    assert [e[1:3] for e in fleet.effects(job.id)] == [(1, "ran")]
    completions = [h for h in fleet.history(job.id) if h.to_status is S.COMPLETED]
    assert len(completions) == 1


def test_late_duplicate_of_a_completed_job_runs_nothing(fleet: Fleet) -> None:
    fleet.start_worker("w1")
    publisher = fleet.publisher()
    [job] = submit_jobs(fleet.engine, publisher, [NewJob(type="effect")])
    wait_until(lambda: fleet.job(job.id).status is S.COMPLETED, 60, "completed")
    history_before = fleet.history(job.id)

    publisher.publish(dispatch_ref(job))
    # The broker alone can look idle while a message is between its list and the worker.
    wait_until(lambda: "claim_refused" in fleet.log_of("w1"), 60, "late duplicate refused")
    wait_until(lambda: broker_idle(fleet.broker_url), 60, "late duplicate consumed")
    assert fleet.history(job.id) == history_before
    assert len(fleet.effects(job.id)) == 1


def test_plain_celery_call_is_adopted_and_guarded(fleet: Fleet) -> None:
    fleet.start_worker("w1")
    env = fleet.env()
    sent = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "call",
            "jobs.effect",
            "--kwargs",
            '{"source": "plain celery"}',
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    task_id = sent.stdout.strip().splitlines()[-1]

    def adopted() -> int | None:
        with transaction(fleet.engine) as conn:
            found = JobsRepository(conn).find_by_idempotency_key("default", f"celery:{task_id}")
        return found[0].id if found and found[0].status is S.COMPLETED else None

    job_id = wait_until(adopted, 60, "adopted job completed")
    job = fleet.job(job_id)
    assert job.type == "effect" and job.payload == {"source": "plain celery"}
    assert [h.to_status for h in fleet.history(job_id)] == [
        S.SCHEDULED,
        S.CLAIMED,
        S.RUNNING,
        S.COMPLETED,
    ]
    assert fleet.history(job_id)[0].reason == "adopted"


def _adopted(fleet: Fleet, tenant: str, task_id: str) -> Job | None:
    with transaction(fleet.engine) as conn:
        found = JobsRepository(conn).find_by_idempotency_key(tenant, f"celery:{task_id}")
    return found[0] if found and found[0].status in FINAL_STATES else None


def test_a_plain_celery_producer_chooses_the_tenant_and_project_of_its_job(fleet: Fleet) -> None:
    fleet.start_worker("w1")
    sender = publisher_app(fleet.settings(), fleet.broker_url)
    sender.send_task(
        "jobs.effect",
        kwargs={"source": "shop"},
        task_id="plain-with-tenant",
        headers={TENANT_HEADER: "shop", PROJECT_HEADER: "orders"},
    )
    job = wait_until(lambda: _adopted(fleet, "shop", "plain-with-tenant"), 60, "adopted")
    assert (job.status, job.tenant_id, job.project_id) == (S.COMPLETED, "shop", "orders")
    assert _adopted(fleet, "default", "plain-with-tenant") is None


def test_a_plain_message_with_a_malformed_tenant_header_is_dead_lettered_not_filed_as_default(
    fleet: Fleet,
) -> None:
    fleet.start_worker("w1")
    sender = publisher_app(fleet.settings(), fleet.broker_url)
    sender.send_task(
        "jobs.effect", kwargs={}, task_id="plain-bad-tenant", headers={TENANT_HEADER: ""}
    )
    job = wait_until(lambda: _adopted(fleet, "default", "plain-bad-tenant"), 60, "dead-lettered")
    assert job.status is S.FAILED
    assert job.last_error is not None and TENANT_HEADER in job.last_error["message"]
    assert fleet.effects(job.id) == []
