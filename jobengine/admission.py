"""Claim admission: a worker process claims more slowly while Postgres is saturated.

When the database is the bottleneck (connection slots full, claims waiting on locks, slow
commits), every worker retrying at full speed only deepens the queue in front of it. Each
process therefore paces its own claims with a rate that reacts to what its claims see, as TCP
does to loss (AIMD): claims that took longer than ``slow_claim_seconds`` (two in a row) or a
claim that failed with a transient store error halve the rate (at most once per
``decrease_interval_seconds``, so one burst of failures counts once); each healthy claim
adds ``increase_per_claim`` claims a second, so the rate climbs back within a few seconds once
the server is healthy, and past ``ceiling_per_second`` pacing stops altogether. Healthy, a
process never waits here.

The pacing is per process, needs no coordination, and only ever delays a claim: the message
waits in this process (prefetch 1), nothing is decided, nothing is lost.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("jobengine.admission")


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    enabled: bool = True
    """Off (``JOBENGINE_CLAIM_ADMISSION=false``), claims are never paced: for a fleet behind
    its own guard (a pooler's queue, a small fixed fleet) or to rule pacing out while
    diagnosing a slow queue."""
    slow_claim_seconds: float = 0.25
    """A claim slower than this is a sign of a saturated server (healthy: a few ms)."""
    floor_per_second: float = 0.5
    """The slowest a process ever claims: one claim every two seconds keeps probing."""
    ceiling_per_second: float = 200.0
    """At this rate pacing stops: healthy claims are never delayed."""
    increase_per_claim: float = 2.0
    decrease_interval_seconds: float = 0.5
    slow_in_a_row: int = 2
    """Slow claims in a row before they count: one alone is as often this process waiting for
    a CPU (8 pool processes on 2 cores, measured by ``bench/scale.py``) as the server."""


class Admission:
    """One process's claim pacing; thread-safe, with an injectable clock and sleep."""

    def __init__(
        self,
        policy: AdmissionPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.policy = policy or AdmissionPolicy()
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rate: float | None = None
        """Claims per second allowed; None while unpaced (healthy)."""
        self._next_at = float("-inf")
        self._decreased_at = float("-inf")
        self._slow_run = 0
        self._admitted: deque[float] = deque(maxlen=int(self.policy.ceiling_per_second) + 1)
        """When the last claims were admitted: the first slowdown halves the rate actually
        seen in the last second, not the ceiling (which would not slow anything)."""

    @property
    def rate(self) -> float | None:
        """The allowed claims per second, or None when claims are not paced."""
        return self._rate

    def admit(self) -> float:
        """Wait for this claim's turn; how long it waited."""
        if not self.policy.enabled:
            return 0.0
        with self._lock:
            now = self._clock()
            self._admitted.append(now)
            if self._rate is None:
                return 0.0
            start = max(now, self._next_at)
            self._next_at = start + 1.0 / self._rate
            wait = start - now
        if wait > 0:
            self._sleep(wait)
        return wait

    def healthy(self) -> None:
        """A claim that reached the store quickly."""
        with self._lock:
            if self._rate is None:
                return
            self._rate += self.policy.increase_per_claim
            if self._rate >= self.policy.ceiling_per_second:
                self._rate = None
                self._next_at = float("-inf")
                log.info("claim_admission_open")

    def congested(self, why: str) -> None:
        """A claim that found the store saturated: slow, refused, or timed out on a lock."""
        if not self.policy.enabled:
            return
        with self._lock:
            now = self._clock()
            if now - self._decreased_at < self.policy.decrease_interval_seconds:
                return
            self._decreased_at = now
            if self._rate is None:
                current = float(sum(1 for t in self._admitted if now - t <= 1.0))
            else:
                current = self._rate
            self._rate = max(self.policy.floor_per_second, current / 2.0)
            rate = self._rate
        log.warning("claim_admission_slowed", why=why, claims_per_second=round(rate, 2))

    def observe(self, seconds: float) -> None:
        """A claim that reached the store and took ``seconds``."""
        if seconds <= self.policy.slow_claim_seconds:
            self._slow_run = 0
            self.healthy()
            return
        self._slow_run += 1
        if self._slow_run >= self.policy.slow_in_a_row:
            self.congested(f"{self._slow_run} claims in a row took over {seconds:.3f} s")
