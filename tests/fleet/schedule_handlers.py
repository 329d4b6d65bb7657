"""A handler for the schedule fleet tests: it answers with the slot its context carries."""

from __future__ import annotations

from typing import Any

from jobengine.context import JobContext
from workers.registry import job


@job("slot_echo")
def slot_echo(ctx: JobContext) -> dict[str, Any]:
    slot = ctx.scheduled_for
    return {"scheduledFor": None if slot is None else slot.isoformat()}
