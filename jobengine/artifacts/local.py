"""Artifacts in a local folder: the default, for one host or a folder every host mounts.

A put writes a temporary file beside its target and renames it into place once complete and
flushed, so a reader never sees half an artifact and a crash leaves at worst a ``.partial``
file, never a key holding part of its bytes.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from jobengine.artifacts.errors import ArtifactBytesMissing, ArtifactInvalid
from jobengine.artifacts.storage import CHUNK_BYTES, MeteredReader, Readable, Stored


class LocalFolderStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ArtifactInvalid(f"storage key {key!r} points outside the artifacts folder")
        return path

    def put(self, key: str, source: Readable, *, name: str, max_bytes: int) -> Stored:
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.partial-{uuid.uuid4().hex}")
        reader = MeteredReader(source, name=name, max_bytes=max_bytes)
        try:
            with partial.open("wb") as out:
                while chunk := reader.read(CHUNK_BYTES):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            partial.replace(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return reader.stored()

    def open(self, key: str) -> Iterator[bytes]:
        try:
            handle = self.path_of(key).open("rb")
        except FileNotFoundError:
            raise ArtifactBytesMissing(f"no bytes under artifact key {key!r}") from None
        return _chunks(handle)

    def delete(self, key: str) -> None:
        path = self.path_of(key)
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # another artifact of the job still lives there
            path.parent.rmdir()


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk
