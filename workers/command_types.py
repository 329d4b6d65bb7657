"""A worker runs command-running job types only where the installation opted in.

Submission already refuses them without ``JOBENGINE_COMMAND_TYPES_ENABLED``; a worker withholds
their handlers too, so a message that reaches it anyway (enqueued by a process configured
otherwise, or before the setting was turned off) runs no command.
"""

from __future__ import annotations

import structlog

from jobengine.job_types import JobTypeRegistry
from workers.registry import Handler

log = structlog.get_logger("workers.command_types")


def withhold_command_handlers(
    handlers: dict[str, Handler], types: JobTypeRegistry, *, enabled: bool
) -> list[str]:
    """Drop the handlers of ``runs_commands`` types unless ``enabled``; the names dropped."""
    if enabled:
        return []
    withheld = sorted(name for name in handlers if types.get(name).runs_commands)
    for name in withheld:
        del handlers[name]
    if withheld:
        log.info(
            "command_types_withheld",
            types=withheld,
            why="JOBENGINE_COMMAND_TYPES_ENABLED is off",
        )
    return withheld
