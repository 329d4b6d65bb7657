"""One job type for the other half of a fleet: workers started with only this module run it."""

from __future__ import annotations

from typing import Any

from jobengine.context import JobContext
from tests.fleet.effects import record_effect
from workers.registry import job


@job("routed_b")
def routed_b(ctx: JobContext) -> dict[str, Any]:
    """Records one effect row per run."""
    record_effect(ctx, "routed_b")
    return {"attempt": ctx.attempt}
