"""Waiting between attempts at a server that is away: capped, exponential, jittered.

Long-running roles (the reaper, start-up checks) retry a database or broker that blinked for
as long as it takes; full jitter keeps a fleet that lost its server together from coming back
in lockstep and refusing itself connection slots.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

import structlog

from jobengine.errors import StoreError

T = TypeVar("T")
log = structlog.get_logger("jobengine.store")


class Backoff:
    """The delays of one run of failures: ``next()`` grows to the cap; ``reset()`` on success."""

    def __init__(self, base_seconds: float, cap_seconds: float, rng: random.Random | None = None):
        self.base_seconds = base_seconds
        self.cap_seconds = cap_seconds
        self._rng = rng or random.Random()
        self._failures = 0

    @property
    def failures(self) -> int:
        return self._failures

    def next(self) -> float:
        """The wait before the next attempt: uniform in [base / 2, min(cap, base * 2^n)]."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2.0 ** min(self._failures, 30))
        self._failures += 1
        return self._rng.uniform(min(self.base_seconds / 2, ceiling), ceiling)

    def reset(self) -> None:
        self._failures = 0


def is_transient(exc: BaseException) -> bool:
    """A store error that says the same call may succeed later (the server away, a lost
    conflict, a cancelled statement): a reason to back off, never a fault of the row."""
    return isinstance(exc, StoreError) and exc.retryable


def retrying(
    fn: Callable[[], T], *, attempts: int = 5, deadline: float = 10.0, what: str = "store call"
) -> T:
    """Run ``fn`` (one whole unit of work, e.g. one transaction) again after a transient store
    error (``is_transient``: a dropped connection, a restarting server, a deadlock), with jittered
    exponential backoff (50 ms doubling, at most 1 s a wait), at most ``attempts`` times and
    not after ``deadline`` seconds from the first try; the last error is raised as it was.

    A local stand-in, with the same signature, for the store's own retry helper of the
    attempt pipeline; ``fn`` must take a fresh connection each time and be safe to repeat.
    """
    backoff = Backoff(0.05, 1.0)
    started = time.monotonic()
    tried = 1
    while True:
        try:
            return fn()
        except StoreError as exc:
            if not exc.retryable:
                raise
            wait = backoff.next()
            if tried >= attempts or time.monotonic() + wait - started > deadline:
                raise
            log.info("store_call_retried", what=what, attempt=tried, error=str(exc))
        tried += 1
        time.sleep(wait)
