"""The catalogue across real processes: producers, an API server and a reaper that never
import handler code, workers that announce their types, redeploys and conflicts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from jobengine.api.keys import JOBS_READ, JOBS_WRITE
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus as S
from jobengine.producer import submit_jobs
from tests.api.conftest import make_key
from tests.fleet.catalogue_support import TENANT, handler_env, importers, start_api, start_worker
from tests.fleet.conftest import REPO, Fleet, wait_until

pytestmark = pytest.mark.slow


def stored_type(fleet: Fleet, name: str) -> dict[str, Any] | None:
    with fleet.engine.connect() as conn:
        row = (
            conn.execute(text("SELECT * FROM job_types WHERE name = :n"), {"n": name})
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None


def job_count(fleet: Fleet) -> int:
    with fleet.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM jobs")).scalar_one())


def test_a_producer_that_never_imported_the_handler_submits_by_rest_client_and_enqueue(
    fleet: Fleet,
) -> None:
    worker = start_worker(fleet, "w1")
    reaper = fleet.start_reaper("reaper", **handler_env(fleet))
    key = make_key(fleet.engine, TENANT, JOBS_READ, JOBS_WRITE, name="producer")
    api = start_api(fleet, "api", key)

    env = fleet.env(
        PRODUCER_API_URL=api.url,
        PRODUCER_API_KEY=key,
        PRODUCER_TENANT=TENANT,
        **handler_env(fleet),
    )
    producer = subprocess.run(
        [sys.executable, "-m", "tests.fleet.catalogue_producer"],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert producer.returncode == 0, producer.stderr.decode()
    out = json.loads(producer.stdout.decode().strip().splitlines()[-1])

    assert out["handler_imported"] is False
    refusals = out["refusals"]
    assert refusals["rest"]["status"] == 422 and refusals["rest"]["code"] == "PAYLOAD_INVALID"
    assert "rows: -1 is less than the minimum of 0" in refusals["rest"]["message"]
    assert refusals["client"]["status"] == 422 and "rows" in refusals["client"]["message"]
    assert "'rows' is a required property" in refusals["enqueue"]["message"]
    assert refusals["schema"]["required"] == ["rows"]

    ids = out["ids"]
    assert len(ids) == 3 and job_count(fleet) == 3  # the refused ones left nothing behind
    for job_id in ids:
        wait_until(lambda j=job_id: fleet.job(j).status is S.COMPLETED, 60, f"job {job_id} done")
    assert sorted(fleet.job(j).result["rows"] for j in ids) == [1, 2, 3]  # type: ignore[index]
    assert importers(fleet) == {worker.pid}, "only the worker may import the handler module"
    assert api.proc.pid not in importers(fleet) and reaper.pid not in importers(fleet)


def test_the_catalogue_survives_restarts_and_a_changed_schema_is_applied_within_seconds(
    fleet: Fleet,
) -> None:
    key = make_key(fleet.engine, TENANT, JOBS_READ, JOBS_WRITE, name="ops")
    worker = start_worker(fleet, "w1", "v1")
    api = start_api(fleet, "api1", key)
    first = api.get("/api/v1/job-types/catalogue_report").json()
    assert first["version"] == 1 and "title" not in first["payloadSchema"]["properties"]

    fleet.kill(worker, signal.SIGTERM)
    fleet.kill(api.proc, signal.SIGTERM)
    api = start_api(fleet, "api2", key)
    again = api.get("/api/v1/job-types/catalogue_report").json()
    assert (again["version"], again["definitionHash"]) == (1, first["definitionHash"])
    assert (
        api.post(
            "/api/v1/jobs", {"type": "catalogue_report", "projectId": "p", "payload": {"rows": 500}}
        ).status_code
        == 201
    )

    start_worker(fleet, "w2", "v2")
    changed = wait_until(
        lambda: (t := api.get("/api/v1/job-types/catalogue_report").json())["version"] == 2 and t,
        10,
        "the API sees version 2",
    )
    assert changed["definitionHash"] != first["definitionHash"]
    refused = api.post(
        "/api/v1/jobs", {"type": "catalogue_report", "projectId": "p", "payload": {"rows": 5}}
    )
    assert (
        refused.status_code == 422 and "'title' is a required property" in refused.json()["message"]
    )
    fits = {"type": "catalogue_report", "projectId": "p", "payload": {"rows": 5, "title": "t"}}
    created = api.post("/api/v1/jobs", fits)
    assert created.status_code == 201
    job_id = created.json()["id"]
    wait_until(lambda: fleet.job(job_id).status is S.COMPLETED, 60, "v2 job done")
    assert fleet.job(job_id).result == {"rows": 5, "variant": "v2"}


def test_two_workers_with_conflicting_definitions_the_later_wins_and_both_hashes_are_logged(
    fleet: Fleet,
) -> None:
    first = start_worker(fleet, "w1", "v1")
    old = stored_type(fleet, "catalogue_report")
    assert old is not None and old["version"] == 1
    second = start_worker(fleet, "w2", "v2")
    new = stored_type(fleet, "catalogue_report")
    assert new is not None and new["version"] == 2
    assert new["definition_hash"] != old["definition_hash"]
    assert new["declared_by"].endswith(f":{second.pid}") and old["declared_by"].endswith(
        f":{first.pid}"
    )
    [line] = [ln for ln in fleet.log_of("w2").splitlines() if "job_type_redefined" in ln]
    for value in (
        old["definition_hash"],
        new["definition_hash"],
        old["declared_by"],
        new["declared_by"],
    ):
        assert value in line

    [job] = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="catalogue_report", payload={"rows": 4, "title": "fits both"})],
    )
    wait_until(lambda: fleet.job(job.id).status is S.COMPLETED, 60, "job done")


@pytest.mark.parametrize("variant", ["malformed", "unrepresentable"])
def test_a_malformed_schema_fails_the_worker_at_start_with_one_line_naming_the_type(
    fleet: Fleet, variant: str
) -> None:
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.app",
        "worker",
        "-P",
        "solo",
        "-n",
        "bad@%h",
        "--without-mingle",
        "--without-gossip",
    ]
    proc = fleet.spawn("bad", argv, fleet.env(**handler_env(fleet, variant)))
    assert proc.wait(60) != 0
    log = fleet.log_of("bad")
    assert "Traceback" not in log and "ready." not in log
    [line] = [ln for ln in log.splitlines() if "refused to start" in ln]
    assert "job type 'catalogue_report'" in line and "not valid JSON Schema" in line
    assert stored_type(fleet, "catalogue_report") is None and stored_type(fleet, "noop") is None


def test_a_reaper_that_never_imported_the_handler_applies_the_types_own_retry_policy(
    fleet: Fleet,
) -> None:
    reaper = fleet.start_reaper("reaper", **handler_env(fleet))
    worker = start_worker(fleet, "w1")
    [job] = submit_jobs(fleet.engine, fleet.publisher(), [NewJob(type="catalogue_hang")])

    wait_until(lambda: fleet.job(job.id).status is S.RUNNING, 60, "attempt 1 running")
    fleet.kill(worker)
    rescued = wait_until(
        lambda: (j := fleet.job(job.id)).status is S.SCHEDULED and j.not_before and j,
        60,
        "rescued and rescheduled",
    )
    scheduled = [h for h in fleet.history(job.id) if h.to_status is S.SCHEDULED][-1]
    assert scheduled.actor.startswith("reaper") and scheduled.attempt == 1
    backoff = rescued.not_before - scheduled.at
    delay = timedelta(seconds=3)  # catalogue_handlers.HANG_POLICY, not imported here
    # Fixed and without jitter; the default policy would wait at most 1 s (full jitter).
    assert abs(backoff - delay) < timedelta(seconds=0.5), backoff

    worker = start_worker(fleet, "w2")
    wait_until(lambda: fleet.job(job.id).status is S.RUNNING, 60, "attempt 2 running")
    claimed = [h for h in fleet.history(job.id) if h.to_status is S.CLAIMED]
    assert len(claimed) == 2 and claimed[1].at >= rescued.not_before
    fleet.kill(worker)
    wait_until(lambda: fleet.job(job.id).status is S.FAILED, 60, "failed for good")

    history = fleet.history(job.id)
    assert [h.to_status for h in history].count(S.CLAIMED) == 2  # max_retries 1: 2 attempts
    assert history[-1].actor.startswith("reaper") and history[-1].reason == "lease_expired"
    assert fleet.job(job.id).attempt == 2
    assert reaper.pid not in importers(fleet)
