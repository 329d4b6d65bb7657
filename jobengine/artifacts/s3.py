"""Artifacts in an S3-compatible bucket (AWS S3, MinIO, Ceph, moto), through boto3.

boto3 is an optional extra (``pip install 'jobengine[s3]'``), imported on first use. A put of
up to one part is one ``PutObject``; a larger one is a multipart upload, part by part, aborted
on any error, so the bucket never shows a partial object and memory holds one part at most.
Credentials and the region come from boto3's usual sources (environment, config files,
instance roles) unless the URL names a region.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

from jobengine.artifacts.errors import ArtifactBytesMissing, ArtifactStorageUnavailable
from jobengine.artifacts.storage import CHUNK_BYTES, MeteredReader, Readable, Stored

PART_BYTES = 8 * 1024 * 1024
"""Above S3's 5 MiB least part size; an artifact up to this size is a single PutObject."""

T = TypeVar("T")


class S3Storage:
    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.region = region
        self._clients: dict[int, Any] = {}
        self._lock = threading.Lock()

    def _client(self) -> Any:
        """One client per process: boto3 clients are thread-safe but must not cross a fork."""
        pid = os.getpid()
        with self._lock:
            if pid not in self._clients:
                try:
                    import boto3
                except ImportError:
                    raise ArtifactStorageUnavailable(
                        "artifacts are configured for S3 but boto3 is not installed",
                        hint="Install the s3 extra: pip install 'jobengine[s3]'.",
                    ) from None
                self._clients[pid] = boto3.session.Session().client(
                    "s3", endpoint_url=self.endpoint_url, region_name=self.region
                )
            return self._clients[pid]

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, source: Readable, *, name: str, max_bytes: int) -> Stored:
        reader = MeteredReader(source, name=name, max_bytes=max_bytes)
        target = self.object_key(key)
        first = _read_part(reader)
        if len(first) < PART_BYTES:
            self._call(lambda c: c.put_object(Bucket=self.bucket, Key=target, Body=first))
            return reader.stored()
        upload = self._call(lambda c: c.create_multipart_upload(Bucket=self.bucket, Key=target))
        upload_id = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        try:
            part = first
            while part:
                number = len(parts) + 1
                answer = self._call(partial(self._upload_part, target, upload_id, number, part))
                parts.append({"ETag": answer["ETag"], "PartNumber": number})
                part = _read_part(reader)
            self._call(
                lambda c: c.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=target,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
            )
        except BaseException:
            self._client().abort_multipart_upload(
                Bucket=self.bucket, Key=target, UploadId=upload_id
            )
            raise
        return reader.stored()

    def _upload_part(
        self, target: str, upload_id: str, number: int, body: bytes, client: Any
    ) -> Any:
        return client.upload_part(
            Bucket=self.bucket, Key=target, UploadId=upload_id, PartNumber=number, Body=body
        )

    def open(self, key: str) -> Iterator[bytes]:
        from botocore.exceptions import ClientError

        try:
            answer = self._call(
                lambda c: c.get_object(Bucket=self.bucket, Key=self.object_key(key))
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ArtifactBytesMissing(f"no bytes under artifact key {key!r}") from None
            raise
        body = answer["Body"]
        return _chunks(body)

    def delete(self, key: str) -> None:
        self._call(lambda c: c.delete_object(Bucket=self.bucket, Key=self.object_key(key)))

    def _call(self, fn: Callable[[Any], T]) -> T:
        """``fn(client)``; a storage that cannot be reached is a retryable engine error."""
        from botocore.exceptions import ConnectionError as BotoConnectionError

        try:
            return fn(self._client())
        except BotoConnectionError as exc:
            raise ArtifactStorageUnavailable(
                f"the S3 storage at {self.endpoint_url or 'AWS'} could not be reached: {exc}"
            ) from exc


def _read_part(reader: MeteredReader) -> bytes:
    """Up to one part's bytes: a short read is not the end of a stream, an empty one is."""
    buffer = bytearray()
    while len(buffer) < PART_BYTES:
        chunk = reader.read(min(CHUNK_BYTES, PART_BYTES - len(buffer)))
        if not chunk:
            break
        buffer += chunk
    return bytes(buffer)


def _chunks(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK_BYTES)
    finally:
        body.close()
