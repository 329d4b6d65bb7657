"""The catalogue of job types the engine accepts, with each type's defaults.

It lives in the engine (not in ``workers/``) because producers, the API and the CLI must
validate a submission without importing handler code. Workers attach handlers to these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from jobengine.errors import PayloadInvalid, UnknownJobType


@dataclass(frozen=True, slots=True)
class JobTypeSpec:
    name: str
    queue: str = "default"
    retry_policy: dict[str, Any] = field(default_factory=dict)
    """Default RetryPolicy fields for this type; a job may override them."""
    time_limit_seconds: float | None = None
    needs_network: bool = False
    runs_commands: bool = False
    description: str = ""
    payload_model: type[BaseModel] | None = None
    """The payload's shape, if the type declares one: submission refuses a payload that does
    not fit, and a worker dead-letters (as poison) a stored one that no longer does."""

    def decode_payload(self, payload: Any) -> Any:
        """The payload as the handler's model, or ``PayloadInvalid`` naming what is wrong."""
        if self.payload_model is None:
            return None
        try:
            return self.payload_model.model_validate(payload)
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "payload"
            raise PayloadInvalid(
                f"payload of job type {self.name!r} does not fit {self.payload_model.__name__}:"
                f" {where}: {first['msg']}",
                hint="Send a payload of the shape the job type declares.",
            ) from None


class JobTypeRegistry:
    def __init__(self) -> None:
        self._specs: dict[str, JobTypeSpec] = {}

    def register(self, spec: JobTypeSpec) -> JobTypeSpec:
        self._specs[spec.name] = spec
        return spec

    def get(self, name: str) -> JobTypeSpec:
        spec = self._specs.get(name)
        if spec is None:
            known = ", ".join(sorted(self._specs)) or "none"
            raise UnknownJobType(
                f"unknown job type {name!r}", hint=f"Register it with @job(...); known: {known}."
            )
        return spec

    def names(self) -> list[str]:
        return sorted(self._specs)


registry = JobTypeRegistry()
"""The process-wide catalogue; built-in types are declared below, more by ``@job``."""

for _spec in (
    JobTypeSpec("noop", description="Does nothing; for tests and benchmarks."),
    JobTypeSpec("sleep", description="Sleeps payload['seconds'], heartbeating."),
    JobTypeSpec(
        "shell", runs_commands=True, description="Runs payload['command']; exit 0 completes."
    ),
    JobTypeSpec("fake_inference", description="Steps with progress, like a model run."),
):
    registry.register(_spec)
