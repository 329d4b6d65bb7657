"""Handlers of the PgBouncer tests, imported by worker processes via JOBENGINE_HANDLER_MODULES.

The effect is a line in the chaos suite's ledger (``tests.chaos.handlers``): a fault between
the engine and Postgres cannot lose or roll it back, so it witnesses what actually ran.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from jobengine.context import JobContext
from tests.chaos.handlers import LEDGER_ENV, RETRY, append_effect
from workers.registry import job

POLL = 0.05


@job("pooled_effect", retry_policy=RETRY)
def pooled_effect(ctx: JobContext) -> dict[str, Any]:
    """Works ``payload['ms']`` milliseconds; fails the attempts in ``payload['fail_attempts']``
    (before its effect, so a retried attempt leaves none), else records its effect."""
    threading.Event().wait(ctx.payload.get("ms", 0) / 1000)
    if ctx.attempt in ctx.payload.get("fail_attempts", []):
        raise RuntimeError(f"failing attempt {ctx.attempt} on purpose")
    append_effect(os.environ[LEDGER_ENV], ctx.job_id, ctx.attempt)
    return {"attempt": ctx.attempt}


@job("pooled_until_cancelled")
def pooled_until_cancelled(ctx: JobContext) -> None:
    """Runs until it is cancelled, then stops as a cooperative handler does."""
    idle = threading.Event()
    while not ctx.cancelled:
        idle.wait(POLL)
    ctx.raise_if_cancelled()


@job("pooled_until_rescued", retry_policy=RETRY)
def pooled_until_rescued(ctx: JobContext) -> dict[str, Any]:
    """Its first attempt runs until its lease is taken away (the test freezes its worker until
    the leader rescues the lease); a later attempt records its effect at once."""
    if ctx.attempt == 1:
        idle = threading.Event()
        while not ctx.cancelled:
            idle.wait(POLL)
        ctx.raise_if_cancelled()
    append_effect(os.environ[LEDGER_ENV], ctx.job_id, ctx.attempt)
    return {"attempt": ctx.attempt}
