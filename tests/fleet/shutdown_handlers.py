"""Handlers for the graceful-shutdown tests, imported by workers via JOBENGINE_HANDLER_MODULES.

A worker started with ``SHUTDOWN_TEST_BLOCKS=1`` is the one being stopped: its long handlers
never finish on their own. Any other worker runs them at once, so a job handed back by the
stopped worker completes elsewhere.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from jobengine.context import JobContext
from jobengine.stopping import WorkerStopping
from tests.fleet.effects import record_effect
from workers.registry import job

POLL = 0.05


def _blocks() -> bool:
    return os.environ.get("SHUTDOWN_TEST_BLOCKS") == "1"


@job("short")
def short(ctx: JobContext) -> dict[str, Any]:
    """A job that takes ``payload['seconds']`` of work, well inside the shutdown bound."""
    record_effect(ctx, "started")
    time.sleep(float(ctx.payload.get("seconds", 0.2)))  # the work itself, not a wait
    record_effect(ctx, "finished")
    return {"attempt": ctx.attempt}


@job("long")
def long(ctx: JobContext) -> dict[str, Any]:
    """Outlasts any bound on a blocking worker; stops when its worker says so."""
    record_effect(ctx, "started")
    idle = threading.Event()
    try:
        while _blocks():
            idle.wait(POLL)
    except WorkerStopping:
        record_effect(ctx, "stopped")
        raise
    record_effect(ctx, "finished")
    return {"attempt": ctx.attempt}


@job("deaf")
def deaf(ctx: JobContext) -> dict[str, Any]:
    """Swallows the stop on a blocking worker: only killing its process ends it."""
    record_effect(ctx, "started")
    idle = threading.Event()
    while _blocks():
        try:
            idle.wait(POLL)
        except WorkerStopping:
            record_effect(ctx, "ignored the stop" if ctx.stopping else "stopped, unflagged")
    record_effect(ctx, "finished")
    return {"attempt": ctx.attempt}
