"""The chaos suite's one handler, imported by worker processes via JOBENGINE_HANDLER_MODULES.

Its effect is a line in a ledger file the engine knows nothing about (``CHAOS_LEDGER``),
appended with ``O_APPEND`` in one ``os.write``: a Postgres fault cannot lose or roll back an
effect, so the ledger is the independent witness of what actually ran.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from jobengine.context import JobContext
from workers.registry import job

LEDGER_ENV = "CHAOS_LEDGER"
RETRY = {"max_retries": 25, "backoff": "fixed", "base_delay_seconds": 0.2, "jitter": "none"}


def append_effect(ledger: str, job_id: int, attempt: int) -> None:
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, f"{job_id} {attempt} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


@job("chaos_effect", retry_policy=RETRY)
def chaos_effect(ctx: JobContext) -> dict[str, Any]:
    """Works for ``payload['ms']`` milliseconds, then records its effect; a generous retry
    budget, because a job whose lease expires in every storm round must not run out of tries
    before the storm ends."""
    threading.Event().wait(ctx.payload.get("ms", 0) / 1000)
    append_effect(os.environ[LEDGER_ENV], ctx.job_id, ctx.attempt)
    return {"attempt": ctx.attempt}
