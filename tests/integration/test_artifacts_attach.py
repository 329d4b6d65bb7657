"""``ctx.attach``'s store and its fence, on a real Postgres and a local folder: a stale attempt
keeps nothing, an artifact over the bound keeps nothing, the same name replaces the bytes it
had, and every statement reads by an index."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from jobengine import guard
from jobengine.artifacts.attach import Attacher
from jobengine.artifacts.errors import ArtifactInvalid, ArtifactTooLarge, AttachRefused
from jobengine.artifacts.local import LocalFolderStorage
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.guard import Step
from jobengine.store.artifacts_repository import ArtifactsRepository
from jobengine.store.database import SharedConnection, transaction

S = JobStatus


def _running(engine: Engine) -> tuple[int, int]:
    with transaction(engine) as conn:
        job = guard.create_job(conn, NewJob(type="effect"), schedule=True)
        assert job is not None
        moved = guard.transition(
            conn,
            job.id,
            [Step(S.CLAIMED), Step(S.RUNNING)],
            lease_owner="test",
            lease_ttl_seconds=30,
        ).job
    return moved.id, moved.lease_token


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


@pytest.fixture
def attacher(engine: Engine, folder: Path) -> Attacher:
    return Attacher(LocalFolderStorage(folder), SharedConnection(engine), max_bytes=1000)


def _blobs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _rows(engine: Engine) -> list[tuple[int, str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT job_id, name, size_bytes FROM artifacts ORDER BY id"))
        return [(r[0], r[1], r[2]) for r in rows]


def test_an_attempt_holding_its_lease_attaches_bytes_a_path_and_a_stream(
    engine: Engine, attacher: Attacher, folder: Path, tmp_path: Path
) -> None:
    job_id, token = _running(engine)
    source = tmp_path / "out.json"
    source.write_bytes(b'{"ok": true}')

    one = attacher.attach(job_id=job_id, lease_token=token, name="a.txt", data=b"hello")
    two = attacher.attach(job_id=job_id, lease_token=token, name="out.json", data=source)
    three = attacher.attach(
        job_id=job_id, lease_token=token, name="s.bin", data=io.BytesIO(b"\x00" * 999)
    )

    assert (one.content_type, one.size_bytes) == ("text/plain", 5)
    assert one.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert (two.content_type, two.size_bytes) == ("application/json", 12)
    assert (three.content_type, three.size_bytes) == ("application/octet-stream", 999)
    with transaction(engine) as conn:
        listed = ArtifactsRepository(conn).of_job(job_id)
    assert [a.name for a in listed] == ["a.txt", "out.json", "s.bin"]
    assert {a.tenant_id for a in listed} == {"default"}
    assert len(_blobs(folder)) == 3


def test_a_stale_attempt_cannot_attach_and_leaves_no_bytes_behind(
    engine: Engine, attacher: Attacher, folder: Path
) -> None:
    job_id, stale = _running(engine)
    with transaction(engine) as conn:  # its lease ran out, and another worker claimed it again
        guard.transition(
            conn,
            job_id,
            [Step(S.FAILED, "LEASE_EXPIRED"), Step(S.SCHEDULED, "retry")],
            lease_token=stale,
            error={"code": "LEASE_EXPIRED"},
        )
        fresh = guard.transition(
            conn,
            job_id,
            [Step(S.CLAIMED), Step(S.RUNNING)],
            lease_owner="other",
            lease_ttl_seconds=30,
        ).job.lease_token

    with pytest.raises(AttachRefused) as refused:
        attacher.attach(job_id=job_id, lease_token=stale, name="late.txt", data=b"late")

    assert refused.value.code == "STALE_LEASE"
    assert "'late.txt' was not kept" in refused.value.message
    assert _rows(engine) == []
    assert _blobs(folder) == []
    attacher.attach(job_id=job_id, lease_token=fresh, name="late.txt", data=b"on time")
    assert _rows(engine) == [(job_id, "late.txt", 7)]


def test_an_artifact_over_the_bound_is_refused_while_it_streams_and_nothing_is_kept(
    engine: Engine, attacher: Attacher, folder: Path
) -> None:
    job_id, token = _running(engine)
    with pytest.raises(ArtifactTooLarge) as refused:
        attacher.attach(job_id=job_id, lease_token=token, name="big.bin", data=b"x" * 1001)
    assert "over the limit of 1000 bytes" in refused.value.message
    assert "JOBENGINE_ARTIFACT_MAX_BYTES" in refused.value.hint
    assert _rows(engine) == []
    assert _blobs(folder) == []


def test_the_same_name_again_replaces_the_artifact_and_deletes_the_bytes_it_had(
    engine: Engine, attacher: Attacher, folder: Path
) -> None:
    job_id, token = _running(engine)
    first = attacher.attach(job_id=job_id, lease_token=token, name="r.txt", data=b"first")
    second = attacher.attach(job_id=job_id, lease_token=token, name="r.txt", data=b"second!")

    assert second.id == first.id and second.storage_key != first.storage_key
    assert _rows(engine) == [(job_id, "r.txt", 7)]
    assert [p.read_bytes() for p in _blobs(folder)] == [b"second!"]


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("../etc/passwd", None), ("", None), ("a b", None), ("ok.txt", "text/plain\r\nX-Evil: 1")],
)
def test_a_name_or_content_type_that_would_break_a_url_or_header_is_refused(
    engine: Engine, attacher: Attacher, name: str, content_type: str | None
) -> None:
    job_id, token = _running(engine)
    with pytest.raises(ArtifactInvalid) as refused:
        attacher.attach(
            job_id=job_id, lease_token=token, name=name, data=b"x", content_type=content_type
        )
    assert refused.value.hint
    assert _rows(engine) == []


def test_text_passed_as_str_is_refused_with_how_to_pass_it(
    engine: Engine, attacher: Attacher
) -> None:
    job_id, token = _running(engine)
    with pytest.raises(ArtifactInvalid) as refused:
        attacher.attach(job_id=job_id, lease_token=token, name="t.txt", data="text")  # type: ignore[arg-type]
    assert "text.encode()" in refused.value.hint
