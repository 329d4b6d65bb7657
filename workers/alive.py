"""A file the worker's event loop touches, for a liveness probe that asks neither Postgres nor
Redis.

An orchestrator that restarts a worker because its database or broker blinked would turn a
short outage into lost work: the worker already waits those out (``workers.presence``,
``jobengine.store.backoff``). What only a restart mends is a main process whose event loop no
longer turns, and that is what the file's age shows: the step touches it from the loop's own
timer, so a wedged loop stops touching it. ``jobengine health worker`` reads its age.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from celery import bootsteps
from kombu.asynchronous.timer import Entry

from config.settings import get_settings


class AliveFile(bootsteps.StartStopStep):  # type: ignore[misc]
    """Touches ``JOBENGINE_WORKER_ALIVE_FILE`` every ``JOBENGINE_WORKER_HEARTBEAT_SECONDS``;
    removes it at shutdown, so a draining worker is no longer taken for a live one."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        settings = get_settings()
        self.path = Path(settings.worker_alive_file) if settings.worker_alive_file else None
        self.every = settings.worker_heartbeat_seconds
        self.entry: Entry | None = None
        super().__init__(worker, **kwargs)

    def start(self, worker: Any) -> None:
        if self.path is None:
            return
        self.touch()
        self.entry = worker.timer.call_repeatedly(self.every, self.touch)

    def stop(self, worker: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()  # type: ignore[no-untyped-call]
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def touch(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        os.utime(self.path)
