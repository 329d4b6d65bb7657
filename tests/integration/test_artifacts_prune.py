"""Retention deletes the artifacts of the jobs it deletes: rows with the job, bytes after the
batch has committed; bytes that cannot be deleted stay as orphans, never a row without bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from jobengine import guard
from jobengine.artifacts.attach import Attacher
from jobengine.artifacts.local import LocalFolderStorage
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.guard import Step
from jobengine.store.database import SharedConnection, transaction
from jobengine.store.retention import prune
from tests.integration.cli_support import invoke
from tests.integration.history_support import age

S = JobStatus


def _completed_with_artifacts(engine: Engine, attacher: Attacher, names: list[str]) -> int:
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
    for name in names:
        attacher.attach(job_id=job.id, lease_token=token, name=name, data=name.encode())
    with transaction(engine) as conn:
        guard.transition(conn, job.id, [Step(S.COMPLETED, "done")], lease_token=token)
    return job.id


def _artifact_rows(engine: Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT job_id, name FROM artifacts ORDER BY job_id, name"))
        return [(r[0], r[1]) for r in rows]


def _files(folder: Path) -> set[str]:
    return {p.read_text() for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def _before() -> datetime:
    return datetime.now(UTC) - timedelta(days=7)


@pytest.fixture
def storage(tmp_path: Path) -> LocalFolderStorage:
    return LocalFolderStorage(tmp_path / "artifacts")


@pytest.fixture
def attacher(engine: Engine, storage: LocalFolderStorage) -> Attacher:
    return Attacher(storage, SharedConnection(engine))


def test_prune_deletes_the_artifacts_rows_and_bytes_of_the_jobs_it_deletes_only(
    engine: Engine, storage: LocalFolderStorage, attacher: Attacher
) -> None:
    old = _completed_with_artifacts(engine, attacher, ["a.txt", "b.txt"])
    young = _completed_with_artifacts(engine, attacher, ["c.txt"])
    age(engine, [old], days=30)

    dry = prune(engine, before=_before(), batch=1, dry_run=True, artifacts=storage)
    assert dry.artifacts == 2
    assert _files(storage.root) == {"a.txt", "b.txt", "c.txt"}

    real = prune(engine, before=_before(), batch=1, artifacts=storage)
    assert real.artifacts == 2 and real.removed["jobs"] == 1
    assert _artifact_rows(engine) == [(young, "c.txt")]
    assert _files(storage.root) == {"c.txt"}


class _DeleteFails(LocalFolderStorage):
    """A storage that keeps bytes but cannot delete them (an outage, a read-only bucket)."""

    def delete(self, key: str) -> None:
        raise OSError("storage is read-only")


def test_bytes_that_cannot_be_deleted_stay_as_orphans_and_the_prune_goes_on(
    engine: Engine, tmp_path: Path
) -> None:
    storage = _DeleteFails(tmp_path / "stuck")
    attacher = Attacher(storage, SharedConnection(engine))
    first = _completed_with_artifacts(engine, attacher, ["x.txt"])
    second = _completed_with_artifacts(engine, attacher, ["y.txt"])
    age(engine, [first, second], days=30)

    report = prune(engine, before=_before(), batch=1, artifacts=storage)

    assert report.removed["jobs"] == 2 and report.artifacts == 2
    assert _artifact_rows(engine) == []
    assert _files(storage.root) == {"x.txt", "y.txt"}


@pytest.fixture
def folder_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "cli-artifacts"
    monkeypatch.setenv("JOBENGINE_ARTIFACTS_URL", folder.as_uri())
    yield folder


def test_db_prune_deletes_the_artifacts_bytes_from_the_configured_storage(
    db_url: str, engine: Engine, closed_broker: str, quiet_cli: None, folder_env: Path
) -> None:
    storage = LocalFolderStorage(folder_env)
    old = _completed_with_artifacts(engine, Attacher(storage, SharedConnection(engine)), ["o.txt"])
    age(engine, [old], days=30)

    code, out, err = invoke(db_url, closed_broker, "db", "prune", "--json")

    assert code == 0, err
    assert json.loads(out)["artifacts"] == 1
    assert _artifact_rows(engine) == [] and _files(folder_env) == set()
