"""Waiting between attempts at a server that is away: capped, exponential, jittered.

Long-running roles (the reaper, start-up checks) retry a database or broker that blinked for
as long as it takes; full jitter keeps a fleet that lost its server together from coming back
in lockstep and refusing itself connection slots.
"""

from __future__ import annotations

import random

from jobengine.errors import StoreError


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
