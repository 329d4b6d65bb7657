"""The client's artifact methods against a real API over a real fleet: listed, downloaded to a
path and to a stream with size and sha256 checked, sync and async alike; bytes that do not
match what was recorded are refused and leave nothing at the destination."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobengine.api.app import create_app
from jobengine.api.keys import JOBS_READ, JOBS_WRITE
from jobengine.artifacts.local import LocalFolderStorage
from jobengine.client import AsyncJobEngineClient, DownloadCorrupt, JobEngineClient, JobStatus
from tests.api.conftest import LiveServer, api_settings, make_key
from tests.fleet import artifact_handlers
from tests.fleet.conftest import Fleet

HANDLERS = json.dumps(["tests.fleet.handlers", "tests.fleet.artifact_handlers"])
TENANT = "shop"
BLOB = 300_000


@pytest.fixture
def served(fleet: Fleet, tmp_path: Path) -> Iterator[tuple[str, str, LocalFolderStorage]]:
    storage = LocalFolderStorage(tmp_path / "artifacts")
    fleet.start_worker(
        "w1", JOBENGINE_HANDLER_MODULES=HANDLERS, JOBENGINE_ARTIFACTS_URL=storage.root.as_uri()
    )
    app = create_app(
        api_settings(fleet.db_url),
        engine=fleet.engine,
        publisher=fleet.publisher(),
        revoker=None,
        broker_check=lambda: None,
        artifacts=storage,
    )
    key = make_key(fleet.engine, TENANT, JOBS_READ, JOBS_WRITE)
    with LiveServer(app) as live:
        yield live.url, key, storage


def test_the_sync_client_lists_and_downloads_artifacts_checked_against_their_sha256(
    served: tuple[str, str, LocalFolderStorage], tmp_path: Path
) -> None:
    url, key, storage = served
    expected = hashlib.sha256(artifact_handlers.blob(BLOB)).hexdigest()
    with JobEngineClient(url, api_key=key, tenant_id=TENANT) as client:
        job = client.create("attach_outputs", {"blob_bytes": BLOB}, project_id="p")
        assert client.wait(job.id, timeout=60).status is JobStatus.COMPLETED

        listed = client.list_artifacts(job.id)
        assert [(a.name, a.size_bytes) for a in listed] == [
            ("blob.bin", BLOB),
            ("report.csv", len(artifact_handlers.REPORT)),
        ]
        assert listed[0].sha256 == expected and listed[0].run_id is None

        target = tmp_path / "out" / "blob.bin"
        target.parent.mkdir()
        got = client.download_artifact(job.id, "blob.bin", to=target)
        assert (got.sha256, got.size_bytes, got.path) == (expected, BLOB, str(target))
        assert hashlib.sha256(target.read_bytes()).hexdigest() == expected
        assert sorted(p.name for p in target.parent.iterdir()) == ["blob.bin"]

        stream = io.BytesIO()
        report = client.download_artifact(job.id, "report.csv", to=stream)
        assert stream.getvalue() == artifact_handlers.REPORT
        assert report.content_type.startswith("text/csv") and report.path is None

        [stored] = [p for p in storage.root.rglob("*") if p.stat().st_size == BLOB]
        stored.write_bytes(b"tampered" + stored.read_bytes()[8:])
        spoiled = tmp_path / "out" / "spoiled.bin"
        with pytest.raises(DownloadCorrupt, match="sha256"):
            client.download_artifact(job.id, "blob.bin", to=spoiled)
        assert not spoiled.exists() and not Path(f"{spoiled}.partial").exists()


def test_the_async_client_lists_and_downloads_artifacts_as_the_sync_one_does(
    served: tuple[str, str, LocalFolderStorage], tmp_path: Path
) -> None:
    url, key, _storage = served

    async def scenario() -> None:
        async with AsyncJobEngineClient(url, api_key=key, tenant_id=TENANT) as client:
            job = await client.create("attach_outputs", {"blob_bytes": 10}, project_id="p")
            assert (await client.wait(job.id, timeout=60)).status is JobStatus.COMPLETED
            names = [a.name for a in await client.list_artifacts(job.id)]
            assert names == ["blob.bin", "report.csv"]
            target = tmp_path / "report.csv"
            got = await client.download_artifact(job.id, "report.csv", to=target)
            assert target.read_bytes() == artifact_handlers.REPORT
            assert got.sha256 == hashlib.sha256(artifact_handlers.REPORT).hexdigest()

    asyncio.run(scenario())
