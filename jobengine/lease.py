"""Heartbeats: one thread per worker process extends the leases of every job it runs.

A lease that stops being extended expires and the reaper takes the job back; a heartbeat that
finds its lease gone (taken over, cancelled) marks the job lost, once, so the handler can stop,
and extends it no more. Threads are started lazily in the process that holds the job, i.e.
after any fork. The heartbeat shares the process's one connection with the task thread, and
survives any error: a failed beat is logged and the next one reconnects.
"""

from __future__ import annotations

import os
import threading

import structlog

from jobengine.store.database import SharedConnection
from jobengine.store.jobs_repository import LeaseRepository

log = structlog.get_logger("jobengine.lease")


class LeaseKeeper:
    def __init__(
        self, connection: SharedConnection, ttl_seconds: float, interval_seconds: float
    ) -> None:
        self._connection = connection
        self.ttl_seconds = ttl_seconds
        self.interval_seconds = interval_seconds
        self._held: dict[int, int] = {}
        self._lost: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def hold(self, job_id: int, lease_token: int) -> None:
        with self._lock:
            self._held[job_id] = lease_token
            self._lost.discard(job_id)
        self._ensure_thread()

    def release(self, job_id: int) -> None:
        with self._lock:
            self._held.pop(job_id, None)
            self._lost.discard(job_id)

    def still_held(self, job_id: int) -> bool:
        with self._lock:
            return job_id not in self._lost

    def held(self) -> dict[int, int]:
        """The leases this process holds: job id → fencing token."""
        with self._lock:
            return dict(self._held)

    def beat(self) -> set[int]:
        """Extend every held lease not yet known lost; returns the ids newly found lost."""
        with self._lock:
            held = {i: t for i, t in self._held.items() if i not in self._lost}
        if not held:
            return set()
        with self._connection.use() as conn:
            alive = LeaseRepository(conn).extend(held, self.ttl_seconds)
        with self._lock:
            # A job released while the beat ran has finished: its lease is not lost.
            lost = {i for i in set(held) - alive if self._held.get(i) == held[i]}
            self._lost |= lost
        for job_id in lost:
            log.warning("lease_lost", job_id=job_id, lease_token=held[job_id])
        return lost

    def stop(self) -> None:
        self._stop.set()

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobengine-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                self.beat()
            except Exception as exc:  # the thread must outlive any error; the next beat retries
                log.warning("heartbeat_failed", error=str(exc), error_class=type(exc).__name__)
