"""The storage interface artifacts' bytes go through, and the one that a URL names.

A storage knows keys and bytes, nothing of jobs: ``put`` streams a source in, counting and
hashing as it goes and refusing it past a bound (nothing is kept then), ``open`` streams it
out, ``delete`` is idempotent (a key already gone is fine), so a retried cleanup is safe.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from jobengine.artifacts.errors import ArtifactTooLarge

CHUNK_BYTES = 1024 * 1024
"""What a stream reads or writes at a time: a big artifact is never held in memory whole."""


class Readable(Protocol):
    """Anything bytes can be pulled from: an open file, a ``BytesIO``, a socket's stream."""

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Stored:
    size_bytes: int
    sha256: str
    """Lowercase hex of the bytes as stored."""


class ArtifactStorage(Protocol):
    def put(self, key: str, source: Readable, *, name: str, max_bytes: int) -> Stored:
        """Store what ``source`` yields under ``key``, all of it or nothing: past
        ``max_bytes`` it raises ``ArtifactTooLarge`` (naming ``name``) and keeps nothing."""
        ...

    def open(self, key: str) -> Iterator[bytes]:
        """The bytes under ``key``, a chunk at a time; ``ArtifactBytesMissing`` if none."""
        ...

    def delete(self, key: str) -> None:
        """Remove the bytes under ``key``; a key that holds nothing is not an error."""
        ...


class MeteredReader(io.RawIOBase):
    """Reads ``source`` through, hashing and counting, and stops the stream past a bound, so
    a storage that pulls the bytes (an S3 upload) is metered as one that pushes them."""

    def __init__(self, source: Readable, *, name: str, max_bytes: int) -> None:
        self._source = source
        self._name = name
        self._max_bytes = max_bytes
        self._hash = hashlib.sha256()
        self.size_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._source.read(len(buffer))
        n = len(data)
        self.size_bytes += n
        if self.size_bytes > self._max_bytes:
            raise ArtifactTooLarge(self._name, self._max_bytes)
        self._hash.update(data)
        buffer[:n] = data
        return n

    def stored(self) -> Stored:
        return Stored(size_bytes=self.size_bytes, sha256=self._hash.hexdigest())


def storage_from_url(url: str | None, data_dir: Path) -> ArtifactStorage:
    """``file:///path`` or ``s3://bucket/prefix?endpoint_url=…&region=…``; None is the folder
    ``artifacts/`` under ``data_dir``. The S3 client is made on first use, in the process
    that uses it (a prefork worker's children each make their own)."""
    from jobengine.artifacts.local import LocalFolderStorage

    if url is None:
        return LocalFolderStorage(data_dir / "artifacts")
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path.startswith("/"):
        return LocalFolderStorage(Path(parts.path))
    if parts.scheme == "s3" and parts.netloc:
        from jobengine.artifacts.s3 import S3Storage

        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return S3Storage(
            bucket=parts.netloc,
            prefix=parts.path.strip("/"),
            endpoint_url=query.get("endpoint_url"),
            region=query.get("region"),
        )
    raise ValueError(
        f"artifacts URL {url!r} names no storage: use file:///absolute/path (three slashes) "
        "or s3://bucket/prefix"
    )
