"""The handler of the fleet across hosts (``tests/chaos/test_hosts.py``), imported by its workers.

Like ``tests.chaos.handlers`` it records its effect in the ledger (``CHAOS_LEDGER``), one line
``job_id attempt hostname pid``, so the ledger also says which host ran each attempt. A job
whose payload says ``hold`` keeps its first attempt running until the test releases it (a file
named after the job in ``HOSTS_RELEASE``): the test decides when that attempt's completion
reaches Postgres, e.g. only after its host's link was cut and healed.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from jobengine.context import JobContext
from tests.chaos.handlers import RETRY
from workers.registry import job

LEDGER_ENV = "CHAOS_LEDGER"
RELEASE_ENV = "HOSTS_RELEASE"
HOLD_LIMIT_S = 120
"""A held attempt returns after this even unreleased, so a failed test leaves no handler."""


def released(job_id: int) -> bool:
    return (Path(os.environ[RELEASE_ENV]) / str(job_id)).exists()


def append_effect(job_id: int, attempt: int) -> None:
    line = f"{job_id} {attempt} {socket.gethostname()} {os.getpid()}\n"
    fd = os.open(os.environ[LEDGER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@job("host_effect", retry_policy=RETRY)
def host_effect(ctx: JobContext) -> dict[str, Any]:
    """Works ``payload['ms']`` milliseconds (a held first attempt: until released), then
    records its effect."""
    if ctx.payload.get("hold") and ctx.attempt == 1:
        deadline = time.monotonic() + HOLD_LIMIT_S
        while not released(ctx.job_id) and time.monotonic() < deadline:
            threading.Event().wait(0.05)
    else:
        threading.Event().wait(ctx.payload.get("ms", 0) / 1000)
    append_effect(ctx.job_id, ctx.attempt)
    return {"attempt": ctx.attempt, "host": socket.gethostname()}
