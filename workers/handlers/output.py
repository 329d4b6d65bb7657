"""The last bytes of a child's output, read as they come, so no command can fill the worker's
memory: ``Popen.communicate()`` holds all of it before anything can be dropped."""

from __future__ import annotations

import os
from typing import IO

READ_BYTES = 64 * 1024


class OutputTail:
    """Keeps the last ``limit`` bytes fed to it and counts every byte.

    It never holds more than ``limit`` bytes between feeds (``limit`` plus one read while a
    chunk is appended), however much output passes through.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._kept = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if len(chunk) >= self.limit:
            self._kept[:] = chunk[-self.limit :]
            return
        self._kept += chunk
        excess = len(self._kept) - self.limit
        if excess > 0:
            del self._kept[:excess]

    def drain(self, stream: IO[bytes]) -> None:
        """Feed everything ``stream`` yields until end of file, one read at a time."""
        fd = stream.fileno()
        while chunk := os.read(fd, READ_BYTES):
            self.feed(chunk)

    @property
    def held(self) -> int:
        return len(self._kept)

    @property
    def dropped(self) -> int:
        return self.total - len(self._kept)

    def text(self) -> str:
        """The kept bytes as text. A character cut at the start, bytes that are not UTF-8, and
        NUL (which Postgres cannot store in JSON) show as U+FFFD."""
        return self._kept.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
