"""What ``make dev`` hands to the processes it starts, and what it tells the user about it.

Every child gets the whole environment ``make dev`` was started with, ``JOBENGINE_*`` included
(``JOBENGINE_HANDLER_MODULES``, ``JOBENGINE_SEALED``, a lease TTL, ...), so the fleet runs the
way the user configured it; only the servers' URLs and the data folder are replaced by what
this run resolved (embedded servers have URLs only once started).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from config.settings import Settings

COMMAND_TYPES = "JOBENGINE_COMMAND_TYPES_ENABLED"


def fleet_env(
    environ: Mapping[str, str], *, database_url: str, broker_url: str, data_dir: Path
) -> dict[str, str]:
    """The environment of every process ``make dev`` starts: all of ``environ``, with the
    servers this run resolved, and command-running types on for the demo unless set."""
    env = dict(environ)
    env.update(
        JOBENGINE_DATABASE_URL=database_url,
        JOBENGINE_BROKER_URL=broker_url,
        JOBENGINE_DATA_DIR=str(data_dir),
    )
    env.setdefault(COMMAND_TYPES, "true")
    return env


@dataclass(frozen=True)
class FleetConfig:
    """What the fleet's processes will read from their environment, to show the user."""

    handler_modules: list[str]
    sealed: bool
    commands_enabled: bool
    commands_turned_on: bool
    """True when this run turned command types on for its demo (the user had not set it)."""

    @classmethod
    def of(cls, env: Mapping[str, str], user_environ: Mapping[str, str]) -> FleetConfig:
        settings = Settings.model_validate(
            {
                "handler_modules": env.get("JOBENGINE_HANDLER_MODULES", "[]"),
                "sealed": env.get("JOBENGINE_SEALED", "false"),
                "command_types_enabled": env[COMMAND_TYPES],
            }
        )
        return cls(
            handler_modules=["workers.handlers.builtin", *settings.handler_modules],
            sealed=settings.sealed,
            commands_enabled=settings.command_types_enabled,
            commands_turned_on=COMMAND_TYPES not in user_environ,
        )

    def lines(self) -> list[str]:
        if not self.commands_enabled:
            commands = f"off ({COMMAND_TYPES}=false): the demo leaves out its shell jobs"
        elif self.commands_turned_on:
            commands = (
                f"on for this demo ({COMMAND_TYPES}=true; set it to false to run without): "
                "API keys still need the jobs:command scope"
            )
        else:
            commands = f"on (from {COMMAND_TYPES})"
        return [
            f"workers: handler modules: {', '.join(self.handler_modules)}",
            "workers: sealed: "
            + ("yes (JOBENGINE_SEALED): no egress but Postgres and Redis" if self.sealed else "no"),
            f"command-running job types (shell): {commands}",
            "workers: Celery task events on (-E), for Flower; production workers leave them off "
            "unless JOBENGINE_TASK_EVENTS=true (they cost about 40% of bare Celery's rate)",
        ]
