"""The dead-letter endpoints' JSON shapes (camelCase on the wire)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import AliasChoices, AwareDatetime, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from jobengine.api.schemas import ApiModel, Name, RequestModel, _nul_free
from jobengine.dead_letters import BulkReplayReport, Replay
from jobengine.domain.dead_letter import (
    DeadLetter,
    DeadLetterReason,
    DeadLetterReplay,
    DeadLetterStatus,
    ReplayOutcome,
)
from jobengine.domain.status import JobStatus


class ReplayIn(RequestModel):
    """How to replay: why (kept in the job's history), a payload patch, a fresh budget."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"reason": "downstream fixed", "payloadPatch": {"retries": 1}, "freshBudget": True}
            ]
        },
    )

    reason: str | None = Field(None, max_length=1000)
    payload_patch: dict[str, Any] | None = Field(
        None, description="Merged into the payload (RFC 7386: null deletes a key)."
    )
    fresh_budget: bool = Field(
        False, description="Grant the whole RetryPolicy again; otherwise one attempt."
    )

    @field_validator("reason", "payload_patch")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if value is not None and not _nul_free(value):
            raise ValueError("must not contain NUL characters")
        return value


class BulkReplayIn(ReplayIn):
    """Which open dead letters to replay; at least one filter, or ``everything``."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": ["send_email"],
                    "failureReason": ["retries_exhausted"],
                    "reason": "smtp fixed",
                    "dryRun": True,
                }
            ]
        },
    )

    type: list[Name] = Field(default_factory=list, max_length=50)
    queue: list[Name] = Field(default_factory=list, max_length=50)
    failure_reason: list[DeadLetterReason] = Field(
        default_factory=list,
        validation_alias=AliasChoices("failureReason", "deadLetterReason", "failure_reason"),
        description="Why the job failed for good; deadLetterReason, its old name, is still "
        "accepted for one release.",
    )
    error_class: list[Name] = Field(default_factory=list, max_length=50)
    failed_after: AwareDatetime | None = None
    failed_before: AwareDatetime | None = None
    everything: bool = Field(False, description="Replay every open entry (no filter).")
    dry_run: bool = Field(False, description="List what would be replayed; change nothing.")
    max_per_second: float | None = Field(None, gt=0, le=10_000)


class ReplayOut(ApiModel):
    dead_letter_id: int
    job_id: int
    outcome: str = Field(description="replayed, or already_replayed (nothing done).")

    @classmethod
    def of(cls, done: Replay) -> ReplayOut:
        return cls(dead_letter_id=done.dead_letter_id, job_id=done.job_id, outcome=done.outcome)


class Skipped(ApiModel):
    dead_letter_id: int
    why: str


class BulkReplayOut(ApiModel):
    dry_run: bool
    selected: list[int] = Field(description="Dead-letter ids, in id order.")
    replayed: list[ReplayOut]
    skipped: list[Skipped]

    @classmethod
    def of(cls, report: BulkReplayReport) -> BulkReplayOut:
        return cls(
            dry_run=report.dry_run,
            selected=[e.id for e in report.selected],
            replayed=[ReplayOut.of(r) for r in report.replayed],
            skipped=[Skipped(dead_letter_id=i, why=w) for i, w in report.skipped],
        )


class DiscardIn(RequestModel):
    reason: str | None = Field(None, max_length=1000)


class DiscardOut(ApiModel):
    dead_letter_id: int
    discarded: bool = Field(description="False: it was already discarded (nothing done).")


class PurgeOut(ApiModel):
    purged: int


class ReplayRecordOut(ApiModel):
    id: int
    actor: str
    reason: str | None
    attempt: int
    payload_patch: dict[str, Any] | None
    fresh_budget: bool
    at: datetime
    outcome: ReplayOutcome

    @classmethod
    def of(cls, r: DeadLetterReplay) -> ReplayRecordOut:
        return cls(
            id=r.id,
            actor=r.actor,
            reason=r.reason,
            attempt=r.attempt,
            payload_patch=r.payload_patch,
            fresh_budget=r.fresh_budget,
            at=r.at.astimezone(UTC),
            outcome=r.outcome,
        )


class DeadLetterOut(ApiModel):
    id: int
    job_id: int
    tenant_id: str
    project_id: str
    type: str
    queue: str
    reason: DeadLetterReason
    error_code: str | None
    error_class: str | None
    error_message: str | None
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    status: DeadLetterStatus
    status_changed_at: datetime
    replay_count: int


class DeadLetterDetail(DeadLetterOut):
    traceback: str | None = Field(description="Admin keys only; null for a tenant's key.")
    exit_code: int | None = Field(description="A failed command's exit code; else null.")
    stderr_tail: str | None = Field(
        description="The last 20 lines a failed command wrote to stderr; else null."
    )
    payload: Any = Field(description="The payload as it was when the job failed.")
    timeline: list[dict[str, Any]] = Field(
        description="Every transition up to the failure: historyId, at, fromStatus, toStatus, "
        "attempt, actor, reason, details."
    )
    job_status: JobStatus | None
    status_changed_by: str | None = Field(description="Who discarded it, if someone did.")
    status_reason: str | None = Field(description="The reason given with the discard.")
    replays: list[ReplayRecordOut]


def _common(e: DeadLetter) -> dict[str, Any]:
    return {
        "id": e.id,
        "job_id": e.job_id,
        "tenant_id": e.tenant_id,
        "project_id": e.project_id,
        "type": e.type,
        "queue": e.queue,
        "reason": e.reason,
        "error_code": e.error_code,
        "error_class": e.error_class,
        "error_message": e.error_message,
        "attempts": e.attempts,
        "first_failed_at": e.first_failed_at.astimezone(UTC),
        "last_failed_at": e.last_failed_at.astimezone(UTC),
        "status": e.status,
        "status_changed_at": e.status_changed_at.astimezone(UTC),
        "replay_count": e.replay_count,
    }


def summary(e: DeadLetter) -> DeadLetterOut:
    return DeadLetterOut(**_common(e))


def detail(e: DeadLetter, *, show_traceback: bool = False) -> DeadLetterDetail:
    return DeadLetterDetail(
        **_common(e),
        traceback=e.traceback if show_traceback else None,
        exit_code=e.exit_code,
        stderr_tail=e.stderr_tail,
        payload=e.payload,
        timeline=[{to_camel(k): v for k, v in step.items()} for step in e.timeline],
        job_status=e.job_status,
        status_changed_by=e.status_changed_by,
        status_reason=e.status_reason,
        replays=[ReplayRecordOut.of(r) for r in e.replays],
    )


class DeadLetterList(ApiModel):
    items: list[DeadLetterOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: last.")
    total: int = Field(description="Entries matching the filter, on every page.")
    total_exact: bool = Field(
        description="False: counting stopped at 10,000 and total is a lower bound."
    )
