"""Batched completions: a worker process records many jobs' completions in one statement.

A no-op job costs Postgres one statement to start and one to complete; the completion is the
one that can wait, since nothing downstream of a worker needs it within milliseconds. The
completer buffers completions and writes them together (``Executor.complete_many``: one fenced
statement, history and outbox rows in it), when ``max_batch`` have gathered or the oldest has
waited ``flush_after_seconds``, whichever comes first, and at once when a caller asks (a chunk
flushes before its message is acknowledged; the process flushes before it exits). Failures,
retries and hand-backs are never buffered: each is decided and written on its own, at once.

**The crash window this opens.** A handler that returned but whose completion was still in
the buffer when its process died has no completion in Postgres. Its lease was released with
its attempt, so the job stays ``running`` until the lease runs out; the leader then takes it
back as ``lease_expired`` and the RetryPolicy runs it again. The window is bounded by
``flush_after_seconds`` (and ``max_batch`` completions) per worker process: outside it, every
returned handler's completion is committed. Handlers must be idempotent anyway (delivery is at
least once); this adds at most one flush interval to what a crash can make run twice.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from jobengine.dispatch import Publisher
from jobengine.errors import JobEngineError
from jobengine.execution import Claim, Executor

log = structlog.get_logger("jobengine.completer")

FLUSH_AFTER_SECONDS = 0.005
MAX_BATCH = 100


@dataclass(frozen=True, slots=True)
class Done:
    claim: Claim
    result: Any
    at: float
    publisher: Publisher | None = None
    """Publishes the run's children this completion releases, once it is written."""


class Completer:
    def __init__(
        self,
        executor: Executor,
        *,
        flush_after_seconds: float = FLUSH_AFTER_SECONDS,
        max_batch: int = MAX_BATCH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if flush_after_seconds <= 0 or max_batch < 1:
            raise ValueError("a completer needs flush_after_seconds > 0 and max_batch >= 1")
        self.executor = executor
        self.flush_after_seconds = flush_after_seconds
        self.max_batch = max_batch
        self._clock = clock
        self._buffer: list[Done] = []
        self._wake = threading.Condition()
        self._flushing = threading.Lock()
        """Held while a batch is written, so two flushes never write the same completion."""
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.store_unreachable = False
        """Whether the last batch could not be written because the store was away; a chunk
        stops running its jobs then, since their completions could not be written either."""

    def add(self, claim: Claim, result: Any, publisher: Publisher | None = None) -> None:
        """Buffer a completion; a full buffer is written at once, in the caller's thread."""
        with self._wake:
            self._buffer.append(
                Done(claim=claim, result=result, at=self._clock(), publisher=publisher)
            )
            full = len(self._buffer) >= self.max_batch
            self._wake.notify()
        if full:
            self.flush()
        else:
            self._ensure_thread()

    def store_reached(self) -> None:
        """The store answered this process again (a claim went through), so a batch that
        failed while it was away no longer stops a chunk: without this, the first chunk
        claimed after an outage ran one job and handed the rest back."""
        self.store_unreachable = False

    def pending(self) -> int:
        with self._wake:
            return len(self._buffer)

    def flush(self) -> int:
        """Write every buffered completion now; returns how many the fence accepted.

        A batch the store would not take within the executor's write deadline is dropped
        and logged (``completions_not_recorded``): those leases run out and the leader
        decides, as for a single outcome that could not be written.
        """
        with self._flushing:
            with self._wake:
                batch, self._buffer = self._buffer, []
            if not batch:
                return 0
            publisher = next((d.publisher for d in batch if d.publisher is not None), None)
            try:
                written = self.executor.complete_many(
                    [(d.claim, d.result) for d in batch], publisher
                )
            except JobEngineError as exc:
                self.store_unreachable = exc.retryable
                log.error(
                    "completions_not_recorded",
                    jobs=[d.claim.job_id for d in batch],
                    error_code=exc.code,
                    error=str(exc),
                )
                return 0
            self.store_unreachable = False
            return sum(1 for job in written.values() if job is not None)

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():  # a fork: the parent's thread and buffer are not ours
            self._pid, self._thread = os.getpid(), None
            with self._wake:
                self._buffer = []
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="jobengine-completer", daemon=True
            )
            self._thread.start()

    def _due_in(self) -> float | None:
        """Seconds until the oldest buffered completion is due; None when there is none."""
        if not self._buffer:
            return None
        return self._buffer[0].at + self.flush_after_seconds - self._clock()

    def _run(self) -> None:
        while True:
            with self._wake:
                due = self._due_in()
                while due is None or due > 0:
                    self._wake.wait(timeout=due)
                    due = self._due_in()
            try:
                self.flush()
            except Exception as exc:  # the thread must outlive any one batch
                log.error("completer_flush_failed", error=str(exc))
