"""Artifacts on a real fleet: a handler attaches, the API lists and streams them back with
their sha256, another tenant sees nothing; once in a local folder, once in an S3-compatible
store (moto's server on loopback)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from jobengine.api.app import create_app
from jobengine.artifacts.s3 import PART_BYTES
from jobengine.artifacts.storage import ArtifactStorage, storage_from_url
from jobengine.cancellation import cancel_job
from jobengine.domain.job import NewJob
from jobengine.domain.status import FINAL_STATES, JobStatus
from jobengine.producer import submit_jobs
from tests.api.conftest import LiveServer, RecordingPublisher, api_settings, bearer, make_key
from tests.fleet import artifact_handlers
from tests.fleet.conftest import Fleet, wait_until
from tests.s3_server import CREDENTIALS, moto_s3

HANDLERS = json.dumps(["tests.fleet.handlers", "tests.fleet.artifact_handlers"])


@pytest.fixture
def s3_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with moto_s3(monkeypatch) as url:
        yield url


def _attach_and_download(fleet: Fleet, url: str, blob_bytes: int) -> None:
    storage: ArtifactStorage = storage_from_url(url, fleet.logs)
    fleet.start_worker(
        "w1", JOBENGINE_HANDLER_MODULES=HANDLERS, JOBENGINE_ARTIFACTS_URL=url, **CREDENTIALS
    )
    [job] = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="attach_outputs", payload={"blob_bytes": blob_bytes})],
    )
    wait_until(lambda: fleet.job(job.id).status in FINAL_STATES, 60, "job final")
    done = fleet.job(job.id)
    assert done.status is JobStatus.COMPLETED, done.last_error
    expected = hashlib.sha256(artifact_handlers.blob(blob_bytes)).hexdigest()
    assert done.result == {
        "report": hashlib.sha256(artifact_handlers.REPORT).hexdigest(),
        "blob": expected,
        "blob_bytes": blob_bytes,
    }

    app = create_app(
        api_settings(fleet.db_url, artifacts_url=url),
        engine=fleet.engine,
        publisher=RecordingPublisher(),
        revoker=None,
        broker_check=lambda: None,
        artifacts=storage,
    )
    mine = bearer(make_key(fleet.engine, "default", "jobs:read"))
    theirs = bearer(make_key(fleet.engine, "other", "jobs:read", name="other"))
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        listed = http.get(f"/api/v1/jobs/{job.id}/artifacts", headers=mine)
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        assert [(a["name"], a["contentType"], a["sizeBytes"]) for a in items] == [
            ("blob.bin", "application/x-test", blob_bytes),
            ("report.csv", "text/csv", len(artifact_handlers.REPORT)),
        ]
        assert items[0]["sha256"] == expected and items[0]["jobId"] == job.id

        with http.stream("GET", f"/api/v1/jobs/{job.id}/artifacts/blob.bin", headers=mine) as r:
            assert r.status_code == 200
            digest = hashlib.sha256()
            for chunk in r.iter_bytes():
                digest.update(chunk)
            assert r.headers["etag"] == f'"{expected}"'
            assert r.headers["content-length"] == str(blob_bytes)
            assert r.headers["content-type"] == "application/x-test"
        assert digest.hexdigest() == expected

        again = http.get(
            f"/api/v1/jobs/{job.id}/artifacts/blob.bin",
            headers={**mine, "If-None-Match": f'"{expected}"'},
        )
        assert again.status_code == 304 and again.content == b""

        for path in (
            f"/api/v1/jobs/{job.id}/artifacts",
            f"/api/v1/jobs/{job.id}/artifacts/blob.bin",
        ):
            refused = http.get(path, headers=theirs)
            assert refused.status_code == 404, path
            assert refused.json()["code"] == "JOB_NOT_FOUND"
        missing = http.get(f"/api/v1/jobs/{job.id}/artifacts/nope.txt", headers=mine)
        assert missing.status_code == 404
        assert missing.json()["code"] == "ARTIFACT_NOT_FOUND"
        assert "jobengine jobs artifacts" in missing.json()["hint"]


def test_a_handler_attaches_artifacts_to_a_local_folder_and_the_api_streams_them_back(
    fleet: Fleet, tmp_path: Path
) -> None:
    _attach_and_download(fleet, (tmp_path / "artifacts").as_uri(), blob_bytes=3 * 1024 * 1024)


def test_a_handler_attaches_artifacts_to_an_s3_store_in_parts_and_the_api_streams_them_back(
    fleet: Fleet, s3_url: str
) -> None:
    _attach_and_download(fleet, s3_url, blob_bytes=PART_BYTES * 2 + 12345)


def test_an_attempt_whose_job_was_cancelled_cannot_attach(fleet: Fleet, tmp_path: Path) -> None:
    folder = tmp_path / "artifacts"
    fleet.start_worker(
        "w1", JOBENGINE_HANDLER_MODULES=HANDLERS, JOBENGINE_ARTIFACTS_URL=folder.as_uri()
    )
    [job] = submit_jobs(
        fleet.engine, fleet.publisher(), [NewJob(type="attach_after_losing_its_lease")]
    )
    wait_until(lambda: [e for e in fleet.effects(job.id) if e[2] == "started"], 60, "started")
    cancel_job(fleet.engine, job.id, actor="test", reason="cancelled mid-run")

    wait_until(lambda: len(fleet.effects(job.id)) == 2, 60, "attach tried")
    assert [e[2] for e in fleet.effects(job.id)] == ["started", "refused:STALE_LEASE"]
    with fleet.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM artifacts")).scalar_one() == 0
    assert not folder.exists() or not [p for p in folder.rglob("*") if p.is_file()]
    assert fleet.job(job.id).status is JobStatus.CANCELLED
