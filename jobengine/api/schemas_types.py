"""The JSON shapes of ``/api/v1/job-types``: a type as the catalogue holds it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from jobengine.api.schemas import ApiModel, utc
from jobengine.catalogue import CatalogueEntry
from jobengine.retry_policy import RetryPolicy


class RetryPolicyOut(ApiModel):
    """The policy a job of this type gets when it overrides nothing."""

    max_retries: int
    backoff: str
    base_delay_seconds: float
    max_delay_seconds: float
    jitter: str
    retry_on: list[str]
    never_retry_on: list[str]

    @classmethod
    def of(cls, policy: RetryPolicy) -> RetryPolicyOut:
        return cls(
            max_retries=policy.max_retries,
            backoff=policy.backoff.value,
            base_delay_seconds=policy.base_delay_seconds,
            max_delay_seconds=policy.max_delay_seconds,
            jitter=policy.jitter.value,
            retry_on=list(policy.retry_on),
            never_retry_on=list(policy.never_retry_on),
        )


class JobTypeOut(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "sleep",
                    "queue": "default",
                    "retryPolicy": {
                        "maxRetries": 3,
                        "backoff": "exponential",
                        "baseDelaySeconds": 1.0,
                        "maxDelaySeconds": 300.0,
                        "jitter": "full",
                        "retryOn": [],
                        "neverRetryOn": ["NonRetryableError", "EgressBlocked", "PoisonMessage"],
                    },
                    "timeLimitSeconds": None,
                    "needsNetwork": False,
                    "runsCommands": False,
                    "description": "Sleeps payload['seconds'], heartbeating.",
                    "payloadSchema": {
                        "type": "object",
                        "properties": {"seconds": {"type": "number", "minimum": 0}},
                    },
                    "definitionHash": "9cb4b9ac…",
                    "version": 1,
                    "declaredBy": "worker@host:4242",
                    "updatedAt": "2026-12-01T09:00:00Z",
                }
            ]
        }
    )

    name: str
    queue: str
    retry_policy: RetryPolicyOut
    time_limit_seconds: float | None
    needs_network: bool
    runs_commands: bool
    description: str
    payload_schema: dict[str, Any] | None = Field(
        description="JSON Schema (Draft 2020-12) every payload of this type must fit."
    )
    definition_hash: str
    version: int
    declared_by: str = Field(description="The worker that announced this definition, or engine.")
    updated_at: datetime | None = Field(
        description="When this definition was announced; null for a built-in no worker"
        " has announced yet."
    )

    @classmethod
    def of(cls, entry: CatalogueEntry) -> JobTypeOut:
        spec = entry.spec
        return cls(
            name=spec.name,
            queue=spec.queue,
            retry_policy=RetryPolicyOut.of(RetryPolicy.resolve(spec.retry_policy)),
            time_limit_seconds=spec.time_limit_seconds,
            needs_network=spec.needs_network,
            runs_commands=spec.runs_commands,
            description=spec.description,
            payload_schema=spec.payload_schema,
            definition_hash=spec.definition_hash,
            version=spec.version,
            declared_by=entry.declared_by,
            updated_at=utc(entry.updated_at),
        )


class JobTypeList(ApiModel):
    items: list[JobTypeOut]
