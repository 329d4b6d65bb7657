"""The API's JSON shapes (camelCase on the wire), with the examples OpenAPI shows.

Request models refuse unknown fields and anything Postgres would refuse later (NUL characters,
out-of-range numbers), so a client's mistake is a 422 naming the field, never a 500.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from jobengine.domain.job import Job, JobHistory
from jobengine.domain.status import JobStatus
from jobengine.storable import nul_path


def no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


def _nul_free(value: Any, depth: int = 0) -> bool:
    if depth > 64:
        raise ValueError("is nested more than 64 levels deep")
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, dict):
        return all(_nul_free(k, depth) and _nul_free(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_nul_free(v, depth + 1) for v in value)
    return True


def payload_storable(value: Any) -> Any:
    """A payload validator's check, shared by every request model that carries a payload."""
    if not _nul_free(value):
        where = nul_path(value, "payload") or "payload"
        raise ValueError(
            f"contains a NUL character (\\u0000) at {where}, which Postgres cannot store; "
            "remove it or encode binary data (e.g. base64)"
        )
    return value


Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(no_nul)]
QueueName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(no_nul)]


def error_view(error: dict[str, Any] | None, *, show_traceback: bool) -> dict[str, Any] | None:
    """A stored error as a key may see it: the traceback only when ``show_traceback``."""
    if error is None or show_traceback:
        return error
    return {k: v for k, v in error.items() if k != "traceback"}


def utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class RequestModel(ApiModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class RetryPolicyIn(RequestModel):
    """Overrides of the job type's RetryPolicy; fields left out keep the type's values."""

    max_retries: int | None = Field(None, ge=0, le=1000)
    backoff: Literal["fixed", "linear", "exponential"] | None = None
    base_delay_seconds: float | None = Field(None, ge=0, le=7 * 86400)
    max_delay_seconds: float | None = Field(None, ge=0, le=30 * 86400)
    jitter: Literal["none", "full", "equal"] | None = None
    retry_on: list[Name] | None = Field(None, max_length=100)
    never_retry_on: list[Name] | None = Field(None, max_length=100)

    def to_engine(self) -> dict[str, Any]:
        """The engine's own (snake_case) policy fields, only those the client set."""
        return self.model_dump(exclude_none=True, by_alias=False)


class JobCreate(RequestModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "fake_inference",
                    "projectId": "vision",
                    "payload": {"prompt": "a cat", "steps": 4},
                    "queue": "default",
                    "priority": 5,
                    "retryPolicy": {"maxRetries": 3, "backoff": "exponential"},
                    "timeLimitSeconds": 600,
                }
            ]
        },
    )

    type: Name = Field(description="A registered job type, e.g. noop, sleep, fake_inference.")
    project_id: Name
    payload: Any = Field(default_factory=dict, description="JSON, at most 256 KiB compact.")
    queue: QueueName = "default"
    priority: int = Field(0, ge=0, le=9, description="0 (lowest) to 9 (most urgent).")
    not_before: AwareDatetime | None = Field(None, description="Not before, with an offset.")
    retry_policy: RetryPolicyIn | None = None
    time_limit_seconds: float | None = Field(None, gt=0, le=7 * 86400)

    @field_validator("payload")
    @classmethod
    def _payload_storable(cls, value: Any) -> Any:
        return payload_storable(value)


class BatchJobCreate(JobCreate):
    idempotency_key: IdempotencyKey | None = None


class BatchCreate(RequestModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "jobs": [
                        {"type": "noop", "projectId": "etl", "idempotencyKey": "etl-2026-11-24"},
                        {"type": "sleep", "projectId": "etl", "payload": {"seconds": 1}},
                    ]
                }
            ]
        },
    )

    jobs: list[BatchJobCreate] = Field(min_length=1, max_length=1000)


JOB_EXAMPLE: dict[str, Any] = {
    "id": 42,
    "tenantId": "acme",
    "projectId": "vision",
    "type": "fake_inference",
    "queue": "default",
    "priority": 5,
    "status": "running",
    "attempt": 1,
    "payload": {"prompt": "a cat", "steps": 4},
    "progress": {"fraction": 0.5, "message": "step 2 of 4"},
    "result": None,
    "lastError": None,
    "notBefore": None,
    "createdAt": "2026-11-24T10:00:00Z",
    "updatedAt": "2026-11-24T10:00:03Z",
    "scheduledAt": "2026-11-24T10:00:00Z",
    "startedAt": "2026-11-24T10:00:01Z",
    "completedAt": None,
}


class JobOut(ApiModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        json_schema_extra={"examples": [JOB_EXAMPLE]},
    )

    id: int
    tenant_id: str
    project_id: str
    type: str
    queue: str
    priority: int
    status: JobStatus
    attempt: int
    payload: Any
    progress: dict[str, Any] | None
    result: Any | None
    last_error: dict[str, Any] | None = Field(
        description="code, class, message and details of the last failure; its traceback "
        "only for admin keys."
    )
    not_before: datetime | None
    created_at: datetime
    updated_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    scheduled_for: datetime | None = Field(
        default=None, description="The schedule's or backfill's slot the job was created for."
    )

    @classmethod
    def of(cls, job: Job, *, show_traceback: bool = False) -> JobOut:
        """``show_traceback`` only for admin keys: a tenant sees the error's code, class,
        message and details, not the server's file paths."""
        return cls(
            id=job.id,
            tenant_id=job.tenant_id,
            project_id=job.project_id,
            type=job.type,
            queue=job.queue,
            priority=job.priority,
            status=job.status,
            attempt=job.attempt,
            payload=job.payload,
            progress=job.progress,
            result=job.result,
            last_error=error_view(job.last_error, show_traceback=show_traceback),
            not_before=utc(job.not_before),
            created_at=job.created_at.astimezone(UTC),
            updated_at=job.updated_at.astimezone(UTC),
            scheduled_at=utc(job.scheduled_at),
            started_at=utc(job.started_at),
            completed_at=utc(job.completed_at),
            scheduled_for=utc(job.scheduled_for),
        )


class JobList(ApiModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        json_schema_extra={"examples": [{"items": [JOB_EXAMPLE], "nextCursor": "ajE6NDI"}]},
    )

    items: list[JobOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: last.")


class JobBatch(ApiModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        json_schema_extra={"examples": [{"jobs": [JOB_EXAMPLE]}]},
    )

    jobs: list[JobOut]


class HistoryItem(ApiModel):
    id: int
    from_status: JobStatus | None
    to_status: JobStatus
    at: datetime
    actor: str
    reason: str | None
    attempt: int
    details: dict[str, Any]

    @classmethod
    def of(cls, h: JobHistory) -> HistoryItem:
        return cls(
            id=h.id,
            from_status=h.from_status,
            to_status=h.to_status,
            at=h.at.astimezone(UTC),
            actor=h.actor,
            reason=h.reason,
            attempt=h.attempt,
            details=h.details,
        )


class HistoryList(ApiModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": 7,
                            "fromStatus": None,
                            "toStatus": "pending",
                            "at": "2026-11-24T10:00:00Z",
                            "actor": "api:billing (k3x9q2ab)",
                            "reason": None,
                            "attempt": 0,
                            "details": {},
                        }
                    ]
                }
            ]
        },
    )

    items: list[HistoryItem]


class ErrorOut(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "JOB_NOT_FOUND",
                    "message": "job 42 does not exist",
                    "hint": "Check the job id.",
                    "retryable": False,
                }
            ]
        }
    )

    code: str
    message: str
    hint: str
    retryable: bool


class Health(ApiModel):
    status: Literal["ok"] = "ok"
    checks: dict[str, str] = Field(default_factory=dict)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": what}
    for status, what in (
        (401, "No key, or an unknown or revoked key."),
        (403, "The key lacks the scope, or names another tenant."),
        (404, "No such job (or one of another tenant)."),
        (422, "A field or parameter is invalid; the message names it."),
    )
}
ERROR_RESPONSES[503] = {
    "model": ErrorOut,
    "description": "STORE_UNAVAILABLE (Postgres unreachable) or OVERLOADED (the API or its "
    "database is saturated: jobengine.api.shedding); nothing was written. Both are retryable; "
    "on OVERLOADED wait the seconds Retry-After says. A submission retried with the same "
    "Idempotency-Key creates its job once.",
    "headers": {
        "Retry-After": {
            "description": "Seconds to wait before retrying (sent with OVERLOADED).",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
    "content": {
        "application/json": {
            "example": {
                "code": "OVERLOADED",
                "message": "the server is serving as many requests as it can; nothing was done",
                "hint": "The job store is saturated; retry after the seconds Retry-After says.",
                "retryable": True,
            }
        }
    },
}

QUOTA_EXCEEDED_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorOut,
        "description": "QUOTA_EXCEEDED (retryable): the tenant's quota of queued jobs would be "
        "passed, and nothing was written. Retry after the seconds Retry-After says.",
        "headers": {
            "Retry-After": {
                "description": "Seconds until enough of the tenant's queued jobs have likely "
                "started, from how many it runs and how long its recent jobs took.",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
        "content": {
            "application/json": {
                "example": {
                    "code": "QUOTA_EXCEEDED",
                    "message": "tenant 'acme' has 10000 job(s) queued (pending or scheduled) and"
                    " its quota max_queued is 10000; 1 more would exceed it",
                    "hint": "Retry after about 3 s, once some of the tenant's jobs have started,"
                    " submit fewer at once, or ask an operator to raise the quota"
                    " (`jobengine quotas set acme --max-queued N`).",
                    "retryable": True,
                }
            }
        },
    }
}
"""Where a submission may be refused over its tenant's quota (``jobengine.quotas``)."""
