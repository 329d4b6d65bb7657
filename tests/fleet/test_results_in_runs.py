"""Results passed along a run on a real fleet: in a diamond (a → b, a → c, b + c → d) each
job's ``ctx.parents`` holds exactly its parents' results by key, and the run's artifacts are
listed per run through the API, to its own tenant only."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from jobengine.api.app import create_app
from jobengine.artifacts.local import LocalFolderStorage
from jobengine.dispatch import publish_jobs
from jobengine.domain.run import RunJobSpec, RunSpec
from jobengine.domain.status import FINAL_STATES, JobStatus
from jobengine.producer import dispatch_ref
from jobengine.runs import service
from jobengine.store.database import transaction
from tests.api.conftest import LiveServer, RecordingPublisher, api_settings, bearer, make_key
from tests.fleet import artifact_handlers  # noqa: F401  (registers the test job types here too)
from tests.fleet.conftest import Fleet, wait_until

HANDLERS = json.dumps(["tests.fleet.handlers", "tests.fleet.artifact_handlers"])
DIAMOND = (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"))


def test_each_job_of_a_diamond_sees_its_parents_results_and_the_run_lists_its_artifacts(
    fleet: Fleet, tmp_path: Path
) -> None:
    folder = tmp_path / "artifacts"
    fleet.start_worker(
        "w1",
        concurrency=2,
        JOBENGINE_HANDLER_MODULES=HANDLERS,
        JOBENGINE_ARTIFACTS_URL=folder.as_uri(),
    )
    fleet.start_reaper("reaper-1")
    spec = RunSpec(
        tenant_id="acme",
        project_id="etl",
        name="diamond",
        jobs=tuple(RunJobSpec(key=k, type="read_parents", payload={"me": k}) for k in "abcd"),
        edges=DIAMOND,
    )
    with transaction(fleet.engine) as conn:
        run, jobs = service.submit_run(conn, spec, actor="test", dispatching=True)
    roots = [dispatch_ref(j) for j in jobs if j.status is JobStatus.SCHEDULED]
    publish_jobs(fleet.engine, fleet.publisher(), roots, premarked=True)
    ids = {j.run_key: j.id for j in jobs}

    wait_until(
        lambda: all(fleet.job(i).status in FINAL_STATES for i in ids.values()), 90, "run final"
    )
    done = {key: fleet.job(i) for key, i in ids.items()}
    assert {k: j.status for k, j in done.items()} == dict.fromkeys("abcd", JobStatus.COMPLETED)
    a = {"me": "a", "parents": {}}
    b = {"me": "b", "parents": {"a": a}}
    c = {"me": "c", "parents": {"a": a}}
    assert [done[k].result for k in "abc"] == [a, b, c]
    assert done["d"].result == {"me": "d", "parents": {"b": b, "c": c}}

    app = create_app(
        api_settings(fleet.db_url),
        engine=fleet.engine,
        publisher=RecordingPublisher(),
        revoker=None,
        broker_check=lambda: None,
        artifacts=LocalFolderStorage(folder),
    )
    mine = bearer(make_key(fleet.engine, "acme", "jobs:read"))
    theirs = bearer(make_key(fleet.engine, "other", "jobs:read", name="other"))
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        listed = http.get(f"/api/v1/runs/{run.id}/artifacts", headers=mine)
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        assert sorted((i["name"], i["jobId"], i["runId"]) for i in items) == [
            (f"{k}.json", ids[k], run.id) for k in "abcd"
        ]
        d_bytes = http.get(f"/api/v1/jobs/{ids['d']}/artifacts/d.json", headers=mine)
        assert json.loads(d_bytes.content) == done["d"].result
        refused = http.get(f"/api/v1/runs/{run.id}/artifacts", headers=theirs)
        assert refused.status_code == 404
        assert refused.json()["code"] == "RUN_NOT_FOUND"
        unknown = http.get(f"/api/v1/runs/{run.id + 1000}/artifacts", headers=mine)
        assert unknown.status_code == 404 and unknown.json()["code"] == "RUN_NOT_FOUND"
