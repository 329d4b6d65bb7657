"""What a job type is, wherever it is known: its defaults and its payload's JSON Schema.

A spec lives in the engine (not in ``workers/``) because producers, the API, the reaper and the
CLI must judge a submission without importing handler code. Two sources satisfy ``JobTypes``:
the in-process ``JobTypeRegistry`` (filled by ``@job`` where handlers are imported) and the
fleet-wide ``jobengine.catalogue.Catalogue`` in Postgres (filled by the workers' announcements).
Client-facing validation uses only the JSON Schema, which both sources carry; the pydantic
``payload_model`` exists only where the handler module was imported, and decodes for the handler.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from pydantic import BaseModel, ConfigDict, Field, PydanticUserError
from pydantic import ValidationError as PydanticValidationError

from jobengine.errors import MalformedPayloadSchema, PayloadInvalid, UnknownJobType

_validators: dict[str, Draft202012Validator] = {}
_validators_lock = threading.Lock()


def schema_of(name: str, model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12, pydantic's dialect) a payload model declares; a model
    pydantic cannot express as one is refused naming the type, not with pydantic's traceback."""
    try:
        return model.model_json_schema()
    except PydanticUserError as exc:
        raise MalformedPayloadSchema(name, one_line(str(exc))) from None


def one_line(text: str) -> str:
    return " ".join(text.split("\n\nFor further information")[0].split())


@dataclass(frozen=True, slots=True)
class JobTypeSpec:
    name: str
    queue: str = "default"
    retry_policy: dict[str, Any] = field(default_factory=dict)
    """Default RetryPolicy fields for this type; a job may override them."""
    time_limit_seconds: float | None = None
    needs_network: bool = False
    runs_commands: bool = False
    """The handler runs commands on the worker; installations and keys opt in to such types."""
    description: str = ""
    payload_model: type[BaseModel] | None = field(default=None, compare=False)
    """The payload's shape as the handler decodes it; present only in processes that imported
    the handler (or for built-ins). A stored payload that no longer fits is poison."""
    payload_schema: dict[str, Any] | None = None
    """The payload's JSON Schema, what every other process validates with; derived from
    ``payload_model`` when not given."""
    version: int = 1
    """Bumped by the catalogue each time a worker announces a changed definition."""
    definition_hash: str = field(init=False, default="")
    """sha256 of the canonical JSON of the definition, so any change is visible."""

    def __post_init__(self) -> None:
        if self.time_limit_seconds is not None:
            # 30 and 30.0 are one limit; the store returns a float, and the hash must agree.
            object.__setattr__(self, "time_limit_seconds", float(self.time_limit_seconds))
        if self.payload_schema is None and self.payload_model is not None:
            object.__setattr__(self, "payload_schema", schema_of(self.name, self.payload_model))
        object.__setattr__(self, "definition_hash", definition_hash(self.definition()))

    def definition(self) -> dict[str, Any]:
        """Everything that makes two announcements of a type the same type (no version)."""
        return {
            "name": self.name,
            "queue": self.queue,
            "retry_policy": self.retry_policy,
            "time_limit_seconds": self.time_limit_seconds,
            "needs_network": self.needs_network,
            "runs_commands": self.runs_commands,
            "description": self.description,
            "payload_schema": self.payload_schema,
        }

    def validate_payload(self, payload: Any) -> None:
        """Refuse, with ``PayloadInvalid`` naming the field and the problem, a payload that the
        type's JSON Schema does not accept; a type without a schema accepts any payload."""
        if self.payload_schema is None:
            return
        validator = _validator(self.definition_hash, self.payload_schema)
        if validator.is_valid(payload):
            return  # ranking the errors costs ten times the check: only a refusal needs it
        error = best_match(validator.iter_errors(payload))
        if error is None:
            return
        where = ".".join(str(p) for p in error.absolute_path) or "payload"
        raise PayloadInvalid(
            f"payload of job type {self.name!r} does not fit its schema: {where}: {error.message}",
            hint=f"Send a payload of the shape the job type declares (`jobengine types show"
            f" {self.name}` or GET /api/v1/job-types/{self.name}).",
        )

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


def definition_hash(definition: dict[str, Any]) -> str:
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _validator(key: str, schema: dict[str, Any]) -> Draft202012Validator:
    """One compiled validator per definition: compiling a schema costs far more than using it."""
    found = _validators.get(key)
    if found is None:
        found = Draft202012Validator(schema)
        with _validators_lock:
            _validators[key] = found
    return found


class JobTypes(Protocol):
    """Where a process looks job types up: its own registry, or the fleet's catalogue."""

    def get(self, name: str) -> JobTypeSpec: ...

    def names(self) -> list[str]: ...


class JobTypeRegistry:
    """The types this process declares itself (built-ins, and ``@job`` where handlers live)."""

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

    def specs(self) -> list[JobTypeSpec]:
        return [self._specs[name] for name in sorted(self._specs)]


class NoopPayload(BaseModel):
    """Any object; ``noop`` reads nothing."""

    model_config = ConfigDict(extra="allow")


class SleepPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(1.0, ge=0, description="How long to wait.")


class ShellPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: Annotated[str, Field(min_length=1)] | Annotated[list[str], Field(min_length=1)] = (
        Field(description="A string for /bin/sh -c, or a list of arguments.")
    )
    timeout_seconds: float | None = Field(None, gt=0, description="Kill the command after this.")


class FakeInferencePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(5, ge=0, description="Steps to report progress after.")
    step_seconds: float = Field(0.05, ge=0, description="Time each step takes.")
    prompt: str = Field("", description="Echoed in the output.")


BUILTINS: tuple[JobTypeSpec, ...] = (
    JobTypeSpec(
        "noop", description="Does nothing; for tests and benchmarks.", payload_model=NoopPayload
    ),
    JobTypeSpec(
        "sleep", description="Sleeps payload['seconds'], heartbeating.", payload_model=SleepPayload
    ),
    JobTypeSpec(
        "shell",
        description="Runs payload['command']; exit 0 completes.",
        runs_commands=True,
        payload_model=ShellPayload,
    ),
    JobTypeSpec(
        "fake_inference",
        description="Steps with progress, like a model run.",
        payload_model=FakeInferencePayload,
    ),
)
"""Types that ship with the engine: every catalogue knows them even before a worker announced
them, so a fresh installation accepts them at once; workers announce them like any other."""

registry = JobTypeRegistry()
"""This process's own types: the built-ins, and more by ``@job`` where handlers are imported."""

for _spec in BUILTINS:
    registry.register(_spec)
