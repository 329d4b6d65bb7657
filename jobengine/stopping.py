"""A worker process told to stop at its shutdown bound: the handler it runs is interrupted.

A worker's warm shutdown lets running handlers finish until ``JOBENGINE_SHUTDOWN_GRACE_SECONDS``;
then its main process tells each busy pool process to stop (``workers.shutdown``). That arrives
as a signal, so ``StopSwitch.stop`` may only set a flag and, while a handler runs, raise
``WorkerStopping`` into it, as Celery's soft time limit raises its own error. The attempt
pipeline turns it into a hand-back (``running → scheduled``, the attempt returned), so a job
the worker could not finish is run again elsewhere without spending an attempt.

A handler may clean up in ``finally`` or ``except WorkerStopping`` and re-raise; one that
swallows it is left running until its process is killed, and its job is handed back from the
main process instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

STOPPED_REASON = "handed_back: worker shutting down"


class WorkerStopping(BaseException):
    """Raised into a running handler at the shutdown bound.

    A ``BaseException``, like ``KeyboardInterrupt``: a handler's ``except Exception`` must not
    record it as the handler's own failure, which would spend an attempt.
    """


class StopSwitch:
    """One per process: whether it was told to stop, and whether a handler runs right now."""

    def __init__(self) -> None:
        self.stopped = False
        self._handler_running = False

    def stop(self) -> None:
        """Safe in a signal handler: sets the flag, and interrupts a running handler."""
        self.stopped = True
        if self._handler_running:
            self._handler_running = False
            raise WorkerStopping(STOPPED_REASON)

    @contextmanager
    def handler_running(self) -> Iterator[None]:
        """Around a handler's call: a process already told to stop starts none."""
        if self.stopped:
            raise WorkerStopping(STOPPED_REASON)
        self._handler_running = True
        try:
            yield
        finally:
            self._handler_running = False


switch = StopSwitch()
"""This process's switch; a forked pool process inherits it unset (its parent never stops)."""
