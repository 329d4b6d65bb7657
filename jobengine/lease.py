"""Heartbeats: one thread per worker process extends the leases of every job it runs.

A lease that stops being extended expires and the reaper takes the job back; a heartbeat that
finds its lease gone (taken over, cancelled) marks the job lost so the handler can stop.
Threads are started lazily in the process that holds the job, i.e. after any fork.
"""

from __future__ import annotations

import os
import threading

import structlog
from sqlalchemy import Engine

from jobengine.errors import JobEngineError
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import LeaseRepository

log = structlog.get_logger("jobengine.lease")


class LeaseKeeper:
    def __init__(self, engine: Engine, ttl_seconds: float, interval_seconds: float) -> None:
        self._engine = engine
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

    def beat(self) -> set[int]:
        """Extend every held lease once; returns the ids found lost."""
        with self._lock:
            held = dict(self._held)
        if not held:
            return set()
        with transaction(self._engine) as conn:
            alive = LeaseRepository(conn).extend(held, self.ttl_seconds)
        lost = set(held) - alive
        with self._lock:
            self._lost |= {i for i in lost if i in self._held}
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
            except JobEngineError as exc:
                log.warning("heartbeat_failed", error=str(exc))
