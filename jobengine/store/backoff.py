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

from jobengine.errors import StoreUnavailable

T = TypeVar("T")


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


def retry_transient(
    fn: Callable[[], T], *, attempts: int = 3, base_seconds: float = 0.05, cap_seconds: float = 1.0
) -> T:
    """Run ``fn`` (one whole unit of work, e.g. one transaction) again on a transient store
    error: a dropped connection, a deadlock, a serialization failure. Each try takes a fresh
    connection from the pool; the last error is raised when the tries are used up."""
    backoff = Backoff(base_seconds, cap_seconds)
    tried = 1
    while True:
        try:
            return fn()
        except StoreUnavailable:
            if tried >= attempts:
                raise
        tried += 1
        time.sleep(backoff.next())
