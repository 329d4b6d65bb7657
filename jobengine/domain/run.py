"""Runs: jobs and the edges between them, submitted together and promoted in Postgres.

A run is a DAG of jobs named by keys unique within it. A child waits in ``pending`` until
its parents are final; its ``trigger_rule`` says what outcome of theirs releases it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from jobengine.domain.job import Job
from jobengine.domain.status import RunStatus


class TriggerRule(StrEnum):
    """What a child of a run waits for; its parents' final states decide it once."""

    ALL_SUCCESS = "all_success"
    """Released when every parent completed; cancelled as soon as one failed or was cancelled."""
    ALL_DONE = "all_done"
    """Released when every parent is final, whatever became of them (Airflow's ``all_done``)."""
    ON_FAILURE = "on_failure"
    """Released when every parent is final and one of them failed or was cancelled; cancelled
    (``upstream_succeeded``) when all of them completed: a handler for a failure."""


@dataclass(frozen=True, slots=True)
class RunJobSpec:
    """One job of a run as a producer asks for it; ``key`` names it within the run."""

    key: str
    type: str
    payload: Any = None
    queue: str | None = None
    priority: int = 0
    retry_policy: dict[str, Any] | None = None
    time_limit_seconds: float | None = None
    not_before: datetime | None = None
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS


@dataclass(frozen=True, slots=True)
class RunSpec:
    tenant_id: str
    project_id: str
    name: str
    jobs: tuple[RunJobSpec, ...]
    edges: tuple[tuple[str, str], ...] = ()
    """(parent key, child key): the child waits for the parent."""
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Run:
    """A row of ``runs``: its status is stored, kept by the transactions that finalize jobs."""

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


@dataclass(frozen=True, slots=True)
class RunGraph:
    run: Run
    jobs: list[Job]
    """In id order."""
    edges: list[tuple[int, int]]
    """(parent id, child id), by id."""
