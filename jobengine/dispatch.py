"""Handing scheduled jobs to the broker, strictly after the row that says so has committed.

A message names its job in three places Flower shows: the task name (``jobs.<type>``), the
task id (``job-<id>-<attempt>``) and its only argument (the job id). The message carries no
payload: the worker reads the job fresh from Postgres when it claims it.

Messages are routed by type: each goes to the broker queue ``jobs.<type>``, which only workers
that have the type's handler consume, so a job never reaches a worker that cannot run it. The
job's own ``queue`` stays a Postgres concept (concurrency limits, priorities, filters) and is
not a broker queue.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import structlog
from sqlalchemy import Engine

from jobengine.store.database import transaction
from jobengine.store.jobs_repository import DispatchRef, LeaseRepository

log = structlog.get_logger("jobengine.dispatch")

TASK_PREFIX = "jobs."
_TASK_ID = re.compile(r"^job-(\d+)-(\d+)$")
CHUNK_PREFIX = "chunk-"
TENANT_HEADER = "jobengine_tenant"
PROJECT_HEADER = "jobengine_project"
"""Headers a plain Celery producer sets to choose the tenant and project of the job its
message is adopted as (``send_task(..., headers={TENANT_HEADER: "shop"})``); unset, both are
``default``."""


def task_name(job_type: str) -> str:
    return f"{TASK_PREFIX}{job_type}"


def broker_queue(job_type: str) -> str:
    """The broker queue a type's messages travel in; the same name as its task."""
    return f"{TASK_PREFIX}{job_type}"


def task_id_for(job_id: int, attempt: int) -> str:
    return f"job-{job_id}-{attempt}"


def parse_task_id(task_id: str | None) -> tuple[int, int] | None:
    """(job id, attempt) of a message we published; None for one a plain producer sent."""
    match = _TASK_ID.match(task_id or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def adopted_identity(headers: Mapping[str, Any]) -> tuple[str, str]:
    """The tenant and project a plain Celery message asks for, or ``ValueError`` naming the
    header that is not a non-empty string (such a message is dead-lettered, never filed under
    a tenant it did not name)."""
    chosen: list[str] = []
    for header in (TENANT_HEADER, PROJECT_HEADER):
        value = headers.get(header)
        if value is None:
            chosen.append("default")
        elif isinstance(value, str) and value.strip():
            chosen.append(value)
        else:
            raise ValueError(f"message header {header!r} must be a non-empty string, got {value!r}")
    return chosen[0], chosen[1]


def chunk_task_id(refs: Sequence[DispatchRef]) -> str:
    return f"{CHUNK_PREFIX}{refs[0].id}-{refs[-1].id}-{len(refs)}"


def is_chunk(task_id: str | None) -> bool:
    return (task_id or "").startswith(CHUNK_PREFIX)


HARD_LIMIT_GRACE = 5.0
"""Seconds between the soft limit (the handler is told) and the hard one (its process dies)."""


def time_limits(ref: DispatchRef) -> dict[str, float]:
    if ref.time_limit_seconds is None:
        return {}
    return {
        "soft_time_limit": ref.time_limit_seconds,
        "time_limit": ref.time_limit_seconds + HARD_LIMIT_GRACE,
    }


def broker_priority(priority: int) -> int:
    """Our 9 (most urgent) is Redis transport's 0 (served first)."""
    return 9 - priority


class Publisher(Protocol):
    def publish(self, ref: DispatchRef, countdown: float | None = None) -> None: ...

    def publish_chunk(self, refs: Sequence[DispatchRef]) -> None: ...


class CeleryPublisher:
    """Publishes through any Celery app configured for our broker; needs no task code."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def publish(self, ref: DispatchRef, countdown: float | None = None) -> None:
        self._app.send_task(
            task_name(ref.type),
            args=[ref.id],
            task_id=task_id_for(ref.id, ref.attempt + 1),
            queue=broker_queue(ref.type),
            priority=broker_priority(ref.priority),
            countdown=countdown,
            **time_limits(ref),
        )

    def publish_chunk(self, refs: Sequence[DispatchRef]) -> None:
        """One message for several jobs of one type and queue; its arguments are their ids."""
        first = refs[0]
        self._app.send_task(
            task_name(first.type),
            args=[ref.id for ref in refs],
            task_id=chunk_task_id(refs),
            queue=broker_queue(first.type),
            priority=broker_priority(first.priority),
        )


def chunked(refs: Sequence[DispatchRef], size: int) -> list[list[DispatchRef]]:
    """Consecutive jobs of the same type, queue and priority, in groups of at most ``size``.

    Only a backlog is chunked: fewer than two full chunks' worth go out one message per job,
    so a lone job is never held up behind others in a message.
    """
    if size <= 1 or len(refs) < 2 * size:
        return [[ref] for ref in refs]
    groups: list[list[DispatchRef]] = []
    for ref in refs:
        last = groups[-1] if groups else None
        if (
            ref.time_limit_seconds is None  # a time limit is per job, so per message
            and last is not None
            and last[0].time_limit_seconds is None
            and len(last) < size
            and (last[0].type, last[0].queue, last[0].priority)
            == (ref.type, ref.queue, ref.priority)
        ):
            last.append(ref)
        else:
            groups.append([ref])
    return groups


def publish_jobs(
    engine: Engine,
    publisher: Publisher,
    refs: Sequence[DispatchRef],
    *,
    premarked: bool = False,
    chunk_size: int = 1,
) -> list[int]:
    """Publish the jobs (in chunks when a backlog builds) and keep ``dispatched_at`` true.

    ``premarked`` jobs were marked when created (the producer's path): only a failure costs a
    write, clearing the mark of those not sent. Otherwise (the leader's path) the ones sent are
    marked in one statement. A failing publish stops the batch, since the broker is likely
    down; unmarked jobs are published by the leader later. Nothing is lost either way.
    """
    sent: list[int] = []
    for group in chunked(refs, chunk_size):
        try:
            if len(group) == 1:
                publisher.publish(group[0])
            else:
                publisher.publish_chunk(group)
        except Exception as exc:
            unsent = [r.id for r in refs if r.id not in set(sent)]
            log.warning("publish_failed", job_id=group[0].id, error=str(exc), unsent=len(unsent))
            if premarked:
                with transaction(engine) as conn:
                    LeaseRepository(conn).clear_dispatched(unsent)
            break
        sent.extend(ref.id for ref in group)
    if sent and not premarked:
        with transaction(engine) as conn:
            LeaseRepository(conn).mark_dispatched(sent)
    return sent
