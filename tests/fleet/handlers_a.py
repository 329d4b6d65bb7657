"""One job type for one half of a fleet: workers started with only this module run it."""

from __future__ import annotations

from typing import Any

from jobengine.context import JobContext
from tests.fleet.effects import record_effect
from workers.registry import job


@job("routed_a")
def routed_a(ctx: JobContext) -> dict[str, Any]:
    """Records one effect row per run."""
    record_effect(ctx, "routed_a")
    return {"attempt": ctx.attempt}
