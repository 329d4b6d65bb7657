"""The storage contract, held by the local folder and the S3 storage (moto's server on
loopback) alike: a put is counted and hashed as it streams, kept whole or not at all; a read
streams back what was put; a delete is idempotent; a missing key is named as such."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from pydantic import ValidationError as PydanticValidationError

from config.settings import Settings
from jobengine.artifacts.errors import ArtifactBytesMissing, ArtifactTooLarge
from jobengine.artifacts.s3 import PART_BYTES, S3Storage
from jobengine.artifacts.storage import ArtifactStorage, storage_from_url
from tests.s3_server import moto_s3

BIG = PART_BYTES * 2 + 7
"""Three parts of a multipart upload, the last a short one."""


@pytest.fixture(params=["local", "s3"])
def storage(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ArtifactStorage]:
    if request.param == "local":
        yield storage_from_url((tmp_path / "artifacts").as_uri(), tmp_path)
        return
    with moto_s3(monkeypatch) as url:
        yield storage_from_url(url, tmp_path)


def _kept(storage: ArtifactStorage) -> list[str]:
    """Every object or file the storage holds, partial uploads included."""
    if isinstance(storage, S3Storage):
        client = boto3.client("s3", endpoint_url=storage.endpoint_url)
        objects = client.list_objects_v2(Bucket=storage.bucket).get("Contents", [])
        uploads = client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", [])
        return [o["Key"] for o in objects] + [f"upload:{u['Key']}" for u in uploads]
    root: Path = storage.root  # type: ignore[attr-defined]
    return [str(p) for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_a_put_streams_back_whole_with_the_size_and_sha256_it_reported(
    storage: ArtifactStorage,
) -> None:
    data = bytes(range(256)) * (BIG // 256 + 1)
    stored = storage.put("jobs/1/k", io.BytesIO(data), name="big.bin", max_bytes=len(data))
    assert (stored.size_bytes, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert b"".join(storage.open("jobs/1/k")) == data


def test_a_put_past_the_bound_is_refused_and_keeps_nothing_not_even_a_partial_upload(
    storage: ArtifactStorage,
) -> None:
    with pytest.raises(ArtifactTooLarge, match=r"'big\.bin' is over the limit of"):
        storage.put("jobs/1/k", io.BytesIO(b"x" * BIG), name="big.bin", max_bytes=BIG - 1)
    assert _kept(storage) == []


def test_a_delete_is_idempotent_and_a_missing_key_is_named(storage: ArtifactStorage) -> None:
    storage.put("jobs/2/k", io.BytesIO(b"abc"), name="a.txt", max_bytes=10)
    storage.delete("jobs/2/k")
    storage.delete("jobs/2/k")
    assert _kept(storage) == []
    with pytest.raises(ArtifactBytesMissing, match="jobs/2/k"):
        b"".join(storage.open("jobs/2/k"))


@pytest.mark.parametrize("url", ["s3:///no-bucket", "file://relative/folder", "ftp://host/x"])
def test_an_artifacts_url_that_names_no_storage_is_refused_with_the_forms_it_takes(
    url: str,
) -> None:
    with pytest.raises(ValueError, match=r"use file:///absolute/path .* or s3://bucket/prefix"):
        storage_from_url(url, Path("."))


@pytest.mark.parametrize("url", ["file://relative/folder", "s3:///no-bucket", "ftp://host/x"])
def test_settings_refuse_an_artifacts_url_before_any_process_starts(url: str) -> None:
    with pytest.raises(PydanticValidationError, match="JOBENGINE_ARTIFACTS_URL must be"):
        Settings(artifacts_url=url)
