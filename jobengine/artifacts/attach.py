"""``ctx.attach``: a running attempt stores bytes, then records them under its fence.

The order is what keeps storage and Postgres honest without a transaction spanning both:
bytes first, under a key no other artifact uses; then the row, in one statement that only a
holder of the job's current lease token can write; then, once that has committed, the bytes
the row replaced. A stale attempt's bytes are deleted again and it is told so
(``AttachRefused``); a crash between the steps leaves at worst a blob no row names.

**Same name twice on a job replaces** the earlier artifact: a retried attempt attaches its
outputs again under the names its first attempt used, and the job keeps the latest.
"""

from __future__ import annotations

import io
import mimetypes
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from jobengine.artifacts.errors import ArtifactInvalid, AttachRefused
from jobengine.artifacts.model import Artifact
from jobengine.artifacts.storage import ArtifactStorage, Readable
from jobengine.store.artifacts_repository import ArtifactsRepository
from jobengine.store.database import SharedConnection, retrying

log = structlog.get_logger("jobengine.artifacts")

DEFAULT_ARTIFACT_MAX_BYTES = 100 * 1024 * 1024
WRITE_DEADLINE_SECONDS = 10.0
STORE_TRIES = 30

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[\w.+-]+(\s*;\s*[\w.+-]+=[\w.+\"-]+)*$")

Data = bytes | bytearray | memoryview | os.PathLike[str] | Readable
"""What a handler may attach: bytes in memory, a file by its path, or an open binary stream."""


def checked_name(name: str) -> str:
    if not NAME.match(name):
        raise ArtifactInvalid(
            f"artifact name {name[:60]!r} is not allowed",
            hint="Use 1 to 200 letters, digits, '.', '_' or '-', starting with a letter or "
            "digit, e.g. report.csv",
        )
    return name


def content_type_of(name: str, content_type: str | None) -> str:
    """The given type, checked (it becomes a response header), or one guessed from the name."""
    if content_type is None:
        return mimetypes.guess_type(name)[0] or "application/octet-stream"
    if len(content_type) > 200 or not CONTENT_TYPE.match(content_type):
        raise ArtifactInvalid(
            f"content type {content_type[:60]!r} is not a media type",
            hint="Give type/subtype, e.g. text/csv or application/json; charset=utf-8",
        )
    return content_type


class Attacher:
    """Attaches for the attempts of one worker process, through its shared connection."""

    def __init__(
        self,
        storage: ArtifactStorage,
        connection: SharedConnection,
        *,
        max_bytes: int = DEFAULT_ARTIFACT_MAX_BYTES,
        write_deadline_seconds: float = WRITE_DEADLINE_SECONDS,
    ) -> None:
        self.storage = storage
        self.connection = connection
        self.max_bytes = max_bytes
        self.write_deadline_seconds = write_deadline_seconds

    def attach(
        self,
        *,
        job_id: int,
        lease_token: int,
        name: str,
        data: Data,
        content_type: str | None = None,
    ) -> Artifact:
        checked_name(name)
        media_type = content_type_of(name, content_type)
        key = f"jobs/{job_id}/{uuid.uuid4().hex}"
        with _opened(data) as source:
            stored = self.storage.put(key, source, name=name, max_bytes=self.max_bytes)

        def record() -> tuple[Artifact, str | None] | None:
            with self.connection.use() as conn:
                return ArtifactsRepository(conn).attach(
                    job_id=job_id,
                    lease_token=lease_token,
                    name=name,
                    content_type=media_type,
                    size_bytes=stored.size_bytes,
                    sha256=stored.sha256,
                    storage_key=key,
                )

        # A write that kept failing may still have committed before its answer was lost, so
        # its bytes stay (an orphan at worst); only the fence's refusal proves no row names them.
        written = retrying(
            record, attempts=STORE_TRIES, deadline=self.write_deadline_seconds, what="attach"
        )
        if written is None:
            self._forget(key)
            raise AttachRefused(job_id, lease_token, name)
        artifact, replaced = written
        if replaced is not None and replaced != key:
            self._forget(replaced)
        log.info(
            "artifact_attached",
            job_id=job_id,
            name=name,
            size_bytes=artifact.size_bytes,
            replaced=replaced is not None and replaced != key,
        )
        return artifact

    def _forget(self, key: str) -> None:
        """Delete bytes no row names (any longer); a failure only leaves an orphan blob."""
        try:
            self.storage.delete(key)
        except Exception as exc:
            log.warning("artifact_bytes_not_deleted", storage_key=key, error=str(exc))


@contextmanager
def _opened(data: Data) -> Iterator[Readable]:
    """A binary stream over ``data``; a file opened here is closed, a stream the handler
    passed is left open (the handler closes what it opened)."""
    if isinstance(data, bytes | bytearray | memoryview):
        yield io.BytesIO(data)
    elif isinstance(data, str):
        raise ArtifactInvalid(
            "ctx.attach got a str: it takes bytes, a pathlib.Path or a binary stream",
            hint="Pass text.encode() for text, or pathlib.Path(p) for the file at p.",
        )
    elif isinstance(data, os.PathLike):
        with open(os.fspath(data), "rb") as handle:
            yield handle
    else:
        yield data
