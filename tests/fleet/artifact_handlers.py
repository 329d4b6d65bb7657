"""Handlers for the results and artifacts fleet tests (imported by worker processes via
JOBENGINE_HANDLER_MODULES): they attach artifacts, return results of a chosen size, and read
their parents' results."""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from jobengine.artifacts.errors import AttachRefused
from jobengine.context import JobContext
from tests.fleet.effects import record_effect
from workers.registry import job

LOST_WITHIN_SECONDS = 30.0
POLL = 0.05

NO_RETRY = {"max_retries": 0}
REPORT = b"id,value\n1,one\n2,two\n"


def blob(size: int) -> bytes:
    """Bytes of a known content for a size, so a test can compute their sha256 itself."""
    seed = hashlib.sha256(str(size).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


@job("attach_outputs", retry_policy=NO_RETRY)
def attach_outputs(ctx: JobContext) -> dict[str, Any]:
    """Attaches a CSV from memory and a file of ``blob_bytes`` bytes by its path."""
    size = int(ctx.payload["blob_bytes"])
    csv = ctx.attach("report.csv", REPORT)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "blob.bin"
        path.write_bytes(blob(size))
        big = ctx.attach("blob.bin", path, content_type="application/x-test")
    return {"report": csv.sha256, "blob": big.sha256, "blob_bytes": big.size_bytes}


@job("sized_result", retry_policy={"max_retries": 3, "base_delay_seconds": 0.1})
def sized_result(ctx: JobContext) -> dict[str, Any]:
    """Returns a result of about ``bytes`` bytes as JSON."""
    return {"text": "x" * int(ctx.payload["bytes"])}


@job("read_parents", retry_policy=NO_RETRY)
def read_parents(ctx: JobContext) -> dict[str, Any]:
    """Returns its key and what each parent returned, by the parent's key; attaches the
    same as ``<key>.json``."""
    result = {"me": ctx.payload["me"], "parents": dict(ctx.parents)}
    ctx.attach(f"{ctx.payload['me']}.json", json.dumps(result, sort_keys=True).encode())
    return result


@job("attach_after_losing_its_lease", retry_policy=NO_RETRY)
def attach_after_losing_its_lease(ctx: JobContext) -> None:
    """Waits until its heartbeat finds the lease lost (the job was cancelled), then tries to
    attach, and records what it was told."""
    record_effect(ctx, "started")
    deadline = time.monotonic() + LOST_WITHIN_SECONDS
    while not ctx.cancelled:
        if time.monotonic() > deadline:
            raise RuntimeError("the lease was never lost")
        time.sleep(POLL)
    try:
        ctx.attach("late.txt", b"too late")
    except AttachRefused as exc:
        record_effect(ctx, f"refused:{exc.code}")
    else:
        record_effect(ctx, "attached")
