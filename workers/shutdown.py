"""A bounded warm shutdown: SIGTERM lets running jobs finish, then hands back what would not.

Celery's warm shutdown (SIGTERM to the worker's main process) stops taking messages at once;
messages prefetched but not yet started are dropped from the pool unacknowledged, and Redis
puts them back in their queues when the worker's connection closes, unclaimed. It then waits for
the running tasks, with no bound. This step adds the bound, ``JOBENGINE_SHUTDOWN_GRACE_SECONDS``:

1. Until the bound, running handlers finish and are completed as usual.
2. At the bound, each pool process still running a job is told to stop (``STOP_SIGNAL``): the
   handler is interrupted (``jobengine.stopping``), and its job, with a chunk's jobs not yet
   run, is handed back by that process, ``running → scheduled`` under its fencing token, the
   attempt returned, and published again after commit (the leader publishes it otherwise).
3. A pool process still busy ``STOP_WAIT_SECONDS`` later (its handler swallowed the stop, or
   sits in C code) is killed, and this process hands its jobs back, each fenced by the token
   it reads. Either way nothing is left for a lease to expire: that is the crash path.

Pool processes flush their buffered completions as they exit (``workers.hooks``), then the
worker exits. Only the main process must receive SIGTERM (``docker stop`` and Kubernetes send
it to PID 1): a pool process that gets it dies at once, as on a crash; systemd units use
``KillMode=mixed`` for this reason. The bound acts on prefork pool processes; a solo or threads
pool keeps Celery's unbounded warm shutdown.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import structlog
from celery import bootsteps, signals
from celery.worker import state

from config.settings import get_settings
from jobengine.dispatch import CeleryPublisher, is_chunk, parse_task_id
from jobengine.errors import JobEngineError
from jobengine.stopping import switch
from workers.runtime import owner_of, runtime

log = structlog.get_logger("workers.shutdown")

STOP_SIGNAL = signal.SIGUSR2
"""Free in pool processes: billiard takes SIGUSR1 (soft time limit) and SIGTERM (exit)."""
STOP_WAIT_SECONDS = 3.0
"""How long a stopped pool process has to hand its jobs back before it is killed."""
POLL_SECONDS = 0.05


def busy_processes() -> dict[int, list[Any]]:
    """The pool processes running a task now: pid → the requests they run."""
    while True:
        try:
            requests = list(state.active_requests)
            break
        except RuntimeError:  # the set changed while read (a task ended): read it again
            continue
    busy: dict[int, list[Any]] = {}
    for request in requests:
        pid = getattr(request, "worker_pid", None)
        if pid and pid != os.getpid():
            busy.setdefault(pid, []).append(request)
    return busy


def job_ids_of(request: Any) -> Iterator[int]:
    """The jobs a request's message names: one job, or a chunk's."""
    task_id = getattr(request, "id", None)
    if is_chunk(task_id):
        for arg in getattr(request, "args", None) or ():
            yield int(arg)
        return
    parsed = parse_task_id(task_id)
    if parsed is not None:
        yield parsed[0]


class ShutdownBound(bootsteps.StartStopStep):  # type: ignore[misc]
    """The bound of the warm shutdown, watched from a thread of the main process."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self.grace_seconds = get_settings().shutdown_grace_seconds
        self.worker = worker
        self._thread: threading.Thread | None = None
        super().__init__(worker, **kwargs)

    def start(self, worker: Any) -> None:
        global _bound
        self.worker = worker
        _bound = self

    def begin(self) -> None:
        """The warm shutdown began; safe in a signal handler (it only starts a thread)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="jobengine-shutdown", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._watch()
        except Exception as exc:  # the warm shutdown goes on unbounded, as Celery's own
            log.error("shutdown_bound_failed", error=str(exc), error_class=type(exc).__name__)

    def _watch(self) -> None:
        log.info("shutdown_draining", grace_seconds=self.grace_seconds, busy=len(busy_processes()))
        if self._idle_by(time.monotonic() + self.grace_seconds):
            return
        busy = busy_processes()
        log.warning(
            "shutdown_bound_reached",
            grace_seconds=self.grace_seconds,
            jobs=sorted(j for reqs in busy.values() for r in reqs for j in job_ids_of(r)),
        )
        for pid in busy:
            _signal(pid, STOP_SIGNAL)
        if self._idle_by(time.monotonic() + STOP_WAIT_SECONDS):
            return
        for pid, requests in busy_processes().items():
            log.error("shutdown_killing_pool_process", pid=pid)
            _signal(pid, signal.SIGKILL)
            self._hand_back(pid, requests)

    @staticmethod
    def _idle_by(deadline: float) -> bool:
        """Wait until no pool process runs a task, or ``deadline``; whether they all ended."""
        while busy_processes():
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    def _hand_back(self, pid: int, requests: list[Any]) -> None:
        """The jobs a killed pool process held, handed back from here."""
        owner = owner_of(pid)
        publisher = CeleryPublisher(self.worker.app)
        for request in requests:
            for job_id in job_ids_of(request):
                try:
                    runtime().attempts.hand_back_abandoned(job_id, owner, publisher)
                except JobEngineError as exc:
                    # Left as the crash path leaves it: the lease runs out, the leader decides.
                    log.error("shutdown_hand_back_failed", job_id=job_id, error=str(exc))


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        log.info("shutdown_pool_process_gone", pid=pid)


_bound: ShutdownBound | None = None


def on_worker_shutting_down(how: str = "", **_: Any) -> None:
    if how == "Warm" and _bound is not None:
        _bound.begin()


def on_worker_process_init(**_: Any) -> None:
    """A pool process stops its handler when the main process says the bound is reached."""
    signal.signal(STOP_SIGNAL, lambda _signum, _frame: switch.stop())


signals.worker_shutting_down.connect(on_worker_shutting_down, weak=False)
signals.worker_process_init.connect(on_worker_process_init, weak=False)
