"""Handlers for the runs' fleet tests, imported by worker processes via
JOBENGINE_HANDLER_MODULES (beside ``tests.fleet.handlers``)."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import text

from jobengine.context import JobContext
from jobengine.failures import NonRetryableError
from jobengine.runs.service import parent_results
from jobengine.store.database import process_engine
from tests.fleet.effects import record_effect
from workers.registry import job


def _engine() -> Any:
    return process_engine(os.environ["JOBENGINE_DATABASE_URL"])


@job("run_step")
def run_step(ctx: JobContext) -> dict[str, Any]:
    """Records that it ran and returns what its parents returned, by key."""
    record_effect(ctx, "ran")
    with _engine().connect() as conn:
        seen = parent_results(conn, ctx.job_id)
    return {"key": ctx.payload.get("key"), "seen": seen}


@job("run_flaky")
def run_flaky(ctx: JobContext) -> str:
    """Fails for good until the test sets the flag named by payload['until'] (the fix)."""
    record_effect(ctx, "ran")
    with _engine().connect() as conn:
        fixed = conn.execute(
            text("SELECT 1 FROM test_flags WHERE name = :n"), {"n": ctx.payload["until"]}
        ).first()
    if fixed is None:
        raise NonRetryableError("not fixed yet")
    return "fixed"


@job("run_spawner")
def run_spawner(ctx: JobContext) -> list[int]:
    """Adds payload['n'] jobs to its run mid-run, then returns their ids."""
    record_effect(ctx, "ran")
    return [
        ctx.spawn("run_step", {"key": f"spawned-{i}"}, key=f"spawned-{i}")
        for i in range(ctx.payload["n"])
    ]
