"""``jobengine jobs artifacts`` and ``jobengine jobs artifact``: the same fields as REST in
``--json``, bytes written whole or not at all, refusals on one line naming the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from jobengine import guard
from jobengine.artifacts.attach import Attacher
from jobengine.artifacts.local import LocalFolderStorage
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.guard import Step
from jobengine.store.database import SharedConnection, transaction
from tests.integration.cli_support import invoke, one_line_error

S = JobStatus
REST_FIELDS = ("jobId", "runId", "name", "contentType", "sizeBytes", "sha256", "createdAt")


@pytest.fixture
def storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalFolderStorage:
    folder = tmp_path / "artifacts"
    monkeypatch.setenv("JOBENGINE_ARTIFACTS_URL", folder.as_uri())
    return LocalFolderStorage(folder)


@pytest.fixture
def job_id(engine: Engine, storage: LocalFolderStorage) -> int:
    with transaction(engine) as conn:
        job = guard.create_job(conn, NewJob(type="effect"), schedule=True)
        assert job is not None
        token = guard.transition(
            conn,
            job.id,
            [Step(S.CLAIMED), Step(S.RUNNING)],
            lease_owner="test",
            lease_ttl_seconds=30,
        ).job.lease_token
    attacher = Attacher(storage, SharedConnection(engine))
    attacher.attach(job_id=job.id, lease_token=token, name="out.csv", data=b"a,b\n1,2\n")
    return job.id


def test_jobs_artifacts_json_prints_the_fields_rest_does(
    db_url: str, closed_broker: str, quiet_cli: None, job_id: int
) -> None:
    code, out, err = invoke(db_url, closed_broker, "jobs", "artifacts", str(job_id), "--json")
    assert code == 0, err
    [item] = json.loads(out)["items"]
    assert set(item) == {
        "jobId",
        "runId",
        "name",
        "contentType",
        "sizeBytes",
        "sha256",
        "createdAt",
    }
    assert (item["jobId"], item["name"], item["contentType"], item["sizeBytes"]) == (
        job_id,
        "out.csv",
        "text/csv",
        8,
    )


def test_jobs_artifact_writes_the_bytes_and_refuses_to_overwrite_without_force(
    db_url: str, closed_broker: str, quiet_cli: None, job_id: int, tmp_path: Path
) -> None:
    target = tmp_path / "got.csv"
    code, _out, err = invoke(
        db_url, closed_broker, "jobs", "artifact", str(job_id), "out.csv", "-o", str(target)
    )
    assert code == 0, err
    assert target.read_bytes() == b"a,b\n1,2\n"
    assert "wrote 8 bytes" in err

    again = invoke(
        db_url, closed_broker, "jobs", "artifact", str(job_id), "out.csv", "-o", str(target)
    )
    assert "exists; nothing was written" in one_line_error(*again)
    assert "--force" in one_line_error(*again)


def test_jobs_artifact_names_a_missing_artifact_and_how_to_list_them(
    db_url: str, closed_broker: str, quiet_cli: None, job_id: int, tmp_path: Path
) -> None:
    result = invoke(
        db_url,
        closed_broker,
        "jobs",
        "artifact",
        str(job_id),
        "nope.txt",
        "-o",
        str(tmp_path / "x"),
    )
    line = one_line_error(*result)
    assert f"job {job_id} has no artifact named 'nope.txt'" in line
    assert f"jobengine jobs artifacts {job_id}" in line
    assert not (tmp_path / "x").exists()
