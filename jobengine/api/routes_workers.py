"""``/api/v1/workers``: the fleet as its workers announce it, and the types no live worker runs.

Admin keys only: the registry names hosts and process ids of the whole fleet, which is the
operator's business, not a tenant's. The console and autoscaling read this; the answer to
"why does this job wait?" for a type nobody runs is in ``typesWithoutWorker``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from jobengine.api.auth import require
from jobengine.api.keys import ADMIN
from jobengine.api.schemas import ERROR_RESPONSES, ApiModel
from jobengine.api.state import api_state
from jobengine.store.workers_repository import TypeWithoutWorker, WorkerState, WorkerView
from jobengine.workers_registry import WorkersRegistry

router = APIRouter(prefix="/api/v1", tags=["workers"], responses=ERROR_RESPONSES)


class WorkerOut(ApiModel):
    name: str = Field(description="Celery's node name, e.g. gpu-1@host.")
    state: WorkerState = Field(
        description="gone: no heartbeat for JOBENGINE_WORKER_TTL_SECONDS; draining: shutting "
        "down, finishing its tasks and taking no new ones."
    )
    host: str
    pid: int
    queues: list[str] = Field(description="Broker queues it consumes.")
    types: list[str] = Field(description="Job types it has handlers for.")
    concurrency: int | None
    sealed: bool
    version: str | None
    started_at: datetime
    last_seen_at: datetime
    seen_seconds_ago: float

    @classmethod
    def of(cls, worker: WorkerView) -> WorkerOut:
        return cls(
            name=worker.name,
            state=worker.state,
            host=worker.host,
            pid=worker.pid,
            queues=worker.queues,
            types=worker.types,
            concurrency=worker.concurrency,
            sealed=worker.sealed,
            version=worker.version,
            started_at=worker.started_at,
            last_seen_at=worker.last_seen_at,
            seen_seconds_ago=round(worker.seen_seconds_ago, 3),
        )


class TypeWithoutWorkerOut(ApiModel):
    type: str
    waiting: int = Field(description="Due scheduled jobs of the type, waiting in its queue.")
    oldest_waiting_seconds: float
    message: str = Field(examples=["no live worker handles type 'resize': 3 job(s) waiting"])

    @classmethod
    def of(cls, t: TypeWithoutWorker) -> TypeWithoutWorkerOut:
        return cls(
            type=t.type,
            waiting=t.waiting,
            oldest_waiting_seconds=round(t.oldest_waiting_seconds, 3),
            message=t.message,
        )


class WorkersOut(ApiModel):
    workers: list[WorkerOut]
    types_without_worker: list[TypeWithoutWorkerOut] = Field(
        description="Types whose due jobs no live, non-draining worker handles."
    )
    ttl_seconds: float = Field(description="A worker not seen for this long is gone.")


@router.get(
    "/workers",
    response_model=WorkersOut,
    summary="Workers and unhandled types",
    dependencies=[Depends(require(ADMIN))],
)
def list_workers(
    request: Request,
    include_gone: Annotated[
        bool, Query(alias="all", description="Also workers that stopped heartbeating.")
    ] = False,
) -> WorkersOut:
    state = api_state(request)
    registry = WorkersRegistry(state.engine, state.settings.worker_ttl_seconds)
    return WorkersOut(
        workers=[WorkerOut.of(w) for w in registry.workers(include_gone=include_gone)],
        types_without_worker=[TypeWithoutWorkerOut.of(t) for t in registry.types_without_worker()],
        ttl_seconds=registry.ttl_seconds,
    )
