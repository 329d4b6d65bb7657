"""The JSON shapes of ``/api/v1/runs`` (camelCase on the wire, as the job routes).

A run's jobs are named by ``key`` inside the run, so a client writes its edges before it knows
any job id; the graph it reads back names every job and edge both by key and by id, so either
can be followed. The CLI's ``--json`` prints these same models, so every surface uses one
vocabulary.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from jobengine.api.schemas import (
    ApiModel,
    Name,
    QueueName,
    RequestModel,
    RetryPolicyIn,
    error_view,
    payload_storable,
    utc,
)
from jobengine.domain.job import Job
from jobengine.domain.run import Run, RunGraph, RunJobSpec, RunSpec, TriggerRule
from jobengine.domain.status import JobStatus, RunStatus

MAX_RUN_JOBS = 20_000
"""Jobs one request may hold: a 10,000-wide fan-out with room to spare."""
MAX_RUN_EDGES = 100_000

RunKey = Name


class RunJobCreate(RequestModel):
    """One job of a run; everything but ``key`` means what it means on ``POST /jobs``."""

    key: RunKey = Field(description="Unique within the run; edges name jobs by it.")
    type: Name = Field(description="A registered job type, e.g. noop, sleep, fake_inference.")
    payload: Any = Field(default_factory=dict, description="JSON, at most 256 KiB compact.")
    queue: QueueName | None = Field(None, description="Default: the type's own queue.")
    priority: int = Field(0, ge=0, le=9, description="0 (lowest) to 9 (most urgent).")
    retry_policy: RetryPolicyIn | None = None
    time_limit_seconds: float | None = Field(None, gt=0, le=7 * 86400)
    not_before: AwareDatetime | None = Field(None, description="Not before, with an offset.")
    trigger_rule: TriggerRule = Field(
        TriggerRule.ALL_SUCCESS,
        description="all_success: runs when every parent completed (a failed or cancelled "
        "parent cancels it); all_done: runs when every parent is final, whatever the outcome; "
        "on_failure: runs only when some parent failed.",
    )

    @field_validator("payload")
    @classmethod
    def _payload_storable(cls, value: Any) -> Any:
        return payload_storable(value)

    def to_spec(self) -> RunJobSpec:
        return RunJobSpec(
            key=self.key,
            type=self.type,
            payload=self.payload,
            queue=self.queue,
            priority=self.priority,
            retry_policy=self.retry_policy.to_engine() if self.retry_policy else None,
            time_limit_seconds=self.time_limit_seconds,
            not_before=self.not_before,
            trigger_rule=self.trigger_rule,
        )


class RunEdgeIn(RequestModel):
    parent: RunKey = Field(description="The key of the job that runs first.")
    child: RunKey = Field(description="The key of the job that waits for it.")


RUN_CREATE_EXAMPLE: dict[str, Any] = {
    "name": "nightly-etl",
    "projectId": "etl",
    "jobs": [
        {"key": "extract", "type": "noop"},
        {"key": "clean", "type": "noop"},
        {"key": "enrich", "type": "noop"},
        {"key": "load", "type": "noop", "triggerRule": "all_success"},
    ],
    "edges": [
        {"parent": "extract", "child": "clean"},
        {"parent": "extract", "child": "enrich"},
        {"parent": "clean", "child": "load"},
        {"parent": "enrich", "child": "load"},
    ],
}


class RunCreate(RequestModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={"examples": [RUN_CREATE_EXAMPLE]},
    )

    name: Name
    project_id: Name
    jobs: list[RunJobCreate] = Field(min_length=1, max_length=MAX_RUN_JOBS)
    edges: list[RunEdgeIn] = Field(default_factory=list, max_length=MAX_RUN_EDGES)

    def to_spec(self, tenant_id: str, idempotency_key: str | None) -> RunSpec:
        return RunSpec(
            tenant_id=tenant_id,
            project_id=self.project_id,
            name=self.name,
            jobs=tuple(job.to_spec() for job in self.jobs),
            edges=tuple((edge.parent, edge.child) for edge in self.edges),
            idempotency_key=idempotency_key,
        )


RUN_EXAMPLE: dict[str, Any] = {
    "id": 7,
    "tenantId": "acme",
    "projectId": "etl",
    "name": "nightly-etl",
    "status": "running",
    "jobsTotal": 4,
    "jobsCompleted": 1,
    "jobsFailed": 0,
    "jobsCancelled": 0,
    "createdAt": "2026-12-01T10:00:00Z",
    "updatedAt": "2026-12-01T10:00:02Z",
    "completedAt": None,
    "cancelRequestedAt": None,
}


class RunOut(ApiModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        json_schema_extra={"examples": [RUN_EXAMPLE]},
    )

    id: int
    tenant_id: str
    project_id: str
    name: str
    status: RunStatus
    jobs_total: int
    jobs_completed: int
    jobs_failed: int
    jobs_cancelled: int
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    cancel_requested_at: datetime | None

    @classmethod
    def of(cls, run: Run) -> RunOut:
        return cls(**run_fields(run))


def run_fields(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "tenant_id": run.tenant_id,
        "project_id": run.project_id,
        "name": run.name,
        "status": run.status,
        "jobs_total": run.jobs_total,
        "jobs_completed": run.jobs_completed,
        "jobs_failed": run.jobs_failed,
        "jobs_cancelled": run.jobs_cancelled,
        "created_at": run.created_at.astimezone(UTC),
        "updated_at": run.updated_at.astimezone(UTC),
        "completed_at": utc(run.completed_at),
        "cancel_requested_at": utc(run.cancel_requested_at),
    }


class RunJobOut(ApiModel):
    """A job as its run's graph shows it; ``GET /jobs/{id}`` has the rest (payload, result)."""

    id: int
    key: str
    type: str
    queue: str
    status: JobStatus
    attempt: int
    trigger_rule: TriggerRule
    has_result: bool = Field(description="Whether the job returned a result (read it by id).")
    last_error: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def of(cls, job: Job, *, show_traceback: bool) -> RunJobOut:
        assert job.run_key is not None, f"job {job.id} belongs to no run"
        return cls(
            id=job.id,
            key=job.run_key,
            type=job.type,
            queue=job.queue,
            status=job.status,
            attempt=job.attempt,
            trigger_rule=TriggerRule(job.trigger_rule or TriggerRule.ALL_SUCCESS),
            has_result=job.result is not None,
            last_error=error_view(job.last_error, show_traceback=show_traceback),
            created_at=job.created_at.astimezone(UTC),
            started_at=utc(job.started_at),
            completed_at=utc(job.completed_at),
        )


class RunEdgeOut(ApiModel):
    parent: str
    child: str
    parent_id: int
    child_id: int


class RunDetail(RunOut):
    """A run with its graph: every job (in id order) and every edge."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    **RUN_EXAMPLE,
                    "jobs": [
                        {
                            "id": 41,
                            "key": "extract",
                            "type": "noop",
                            "queue": "default",
                            "status": "completed",
                            "attempt": 1,
                            "triggerRule": "all_success",
                            "hasResult": True,
                            "lastError": None,
                            "createdAt": "2026-12-01T10:00:00Z",
                            "startedAt": "2026-12-01T10:00:01Z",
                            "completedAt": "2026-12-01T10:00:01Z",
                        }
                    ],
                    "edges": [
                        {"parent": "extract", "child": "clean", "parentId": 41, "childId": 42}
                    ],
                }
            ]
        },
    )

    jobs: list[RunJobOut]
    edges: list[RunEdgeOut]

    @classmethod
    def of_graph(cls, graph: RunGraph, *, show_traceback: bool = False) -> RunDetail:
        jobs = [RunJobOut.of(job, show_traceback=show_traceback) for job in graph.jobs]
        key_of = {job.id: job.key for job in jobs}
        edges = [
            RunEdgeOut(parent=key_of[p], child=key_of[c], parent_id=p, child_id=c)
            for p, c in graph.edges
        ]
        return cls(**run_fields(graph.run), jobs=jobs, edges=edges)


class RunList(ApiModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        json_schema_extra={"examples": [{"items": [RUN_EXAMPLE], "nextCursor": "cjE6Nw"}]},
    )

    items: list[RunOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: last.")


class RunCancelled(RunDetail):
    """The run after a cancel, and the jobs the cancel moved (an empty list: already final)."""

    cancelled_job_ids: list[int]
