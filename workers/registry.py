"""``@job("type")``: declare a job type and attach the handler that runs it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from jobengine.context import JobContext
from jobengine.job_types import JobTypeSpec, registry

Handler = Callable[[JobContext], Any]

HANDLERS: dict[str, Handler] = {}


def job(
    name: str,
    *,
    queue: str = "default",
    retry_policy: dict[str, Any] | None = None,
    time_limit_seconds: float | None = None,
    needs_network: bool = False,
    runs_commands: bool = False,
    description: str = "",
    payload_model: type[BaseModel] | None = None,
) -> Callable[[Handler], Handler]:
    """Register ``fn`` as the handler of job type ``name``, with the type's defaults.

    The handler receives a ``JobContext`` and returns a JSON-serialisable result; raising
    fails the attempt and lets the job's RetryPolicy decide what follows. With
    ``payload_model`` the payload is decoded into it before the handler runs (``ctx.data``);
    a payload that does not fit is poison: dead-lettered, never retried. The model's JSON
    Schema is what the worker announces to the catalogue, so processes that never import this
    module refuse a misfit payload at submission.
    """

    def register(fn: Handler) -> Handler:
        declares_defaults = bool(
            queue != "default"
            or retry_policy
            or time_limit_seconds
            or needs_network
            or runs_commands
            or payload_model
        )
        if declares_defaults or name not in registry.names():
            registry.register(
                JobTypeSpec(
                    name=name,
                    queue=queue,
                    retry_policy=dict(retry_policy or {}),
                    time_limit_seconds=time_limit_seconds,
                    needs_network=needs_network,
                    runs_commands=runs_commands,
                    description=description or (fn.__doc__ or "").strip().split("\n")[0],
                    payload_model=payload_model,
                )
            )
        HANDLERS[name] = fn
        return fn

    return register
