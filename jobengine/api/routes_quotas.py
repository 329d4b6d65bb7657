"""``/api/v1/quotas`` and ``/api/v1/fair-queues``: tenant quotas and caps, fair-shared queues.

Admin keys only (``router``), but for one read: a quota is what an operator grants a tenant,
not what the tenant chooses; a tenant's own key with ``jobs:read`` may read its own quota and
usage (``tenant_router``).
Each read shows the usage beside the limit (jobs queued, running, waiting for the leader to
publish them), so "why is my job not running?" has its answer here. Changes apply fleet-wide
within seconds (every process re-reads them every two).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import Field

from jobengine.api.auth import acting_tenant, require
from jobengine.api.keys import ADMIN, JOBS_READ, ApiKey
from jobengine.api.schemas import ERROR_RESPONSES, ApiModel, RequestModel
from jobengine.api.state import api_state
from jobengine.audit.rest import origin_of
from jobengine.quotas.book import FairQueueUsage, Quota, QuotaRepository, QuotaUsage
from jobengine.quotas.errors import QuotaNotFound
from jobengine.store.database import transaction

router = APIRouter(
    prefix="/api/v1",
    tags=["quotas"],
    responses=ERROR_RESPONSES,
    dependencies=[Depends(require(ADMIN))],
)

tenant_router = APIRouter(prefix="/api/v1", tags=["quotas"], responses=ERROR_RESPONSES)

TenantId = Annotated[str, Path(min_length=1, max_length=200, description="The tenant.")]
QueueName = Annotated[str, Path(min_length=1, max_length=200, description="The queue.")]


class QuotaIn(RequestModel):
    max_queued: int | None = Field(
        default=None, ge=0, description="Most jobs pending or scheduled; none: no limit."
    )
    max_running: int | None = Field(
        default=None, ge=1, description="Most jobs claimed or running at once; none: no cap."
    )
    weight: int = Field(default=1, ge=1, description="Its share in fair-shared queues.")


class QuotaOut(ApiModel):
    tenant_id: str
    max_queued: int | None
    max_running: int | None
    weight: int
    queued: int = Field(description="Jobs pending or scheduled now.")
    running: int = Field(description="Jobs claimed or running now.")
    waiting: int = Field(description="Scheduled jobs the leader has not published yet.")
    updated_at: datetime | None

    @classmethod
    def of(cls, usage: QuotaUsage) -> QuotaOut:
        quota = usage.quota
        return cls(
            tenant_id=quota.tenant_id,
            max_queued=quota.max_queued,
            max_running=quota.max_running,
            weight=quota.weight,
            queued=usage.queued,
            running=usage.running,
            waiting=usage.waiting,
            updated_at=quota.updated_at,
        )


class QuotaList(ApiModel):
    items: list[QuotaOut]


class FairQueueIn(RequestModel):
    max_in_flight: int = Field(
        default=8, ge=1, description="Most of the queue's messages in the broker at once."
    )


class FairQueueOut(ApiModel):
    queue: str
    max_in_flight: int
    waiting: int = Field(description="Scheduled jobs waiting for the leader's fill.")
    in_flight: int = Field(description="Messages in the broker, not yet claimed.")
    updated_at: datetime | None

    @classmethod
    def of(cls, usage: FairQueueUsage) -> FairQueueOut:
        return cls(
            queue=usage.fair.queue,
            max_in_flight=usage.fair.max_in_flight,
            waiting=usage.waiting,
            in_flight=usage.in_flight,
            updated_at=usage.fair.updated_at,
        )


class FairQueueList(ApiModel):
    items: list[FairQueueOut]


def _usage_of(repo: QuotaRepository, tenant_id: str) -> QuotaOut:
    [usage] = [u for u in repo.usage() if u.quota.tenant_id == tenant_id]
    return QuotaOut.of(usage)


@router.get("/quotas", response_model=QuotaList, summary="Tenant quotas and their usage")
def list_quotas(request: Request) -> QuotaList:
    with transaction(api_state(request).engine) as conn:
        return QuotaList(items=[QuotaOut.of(u) for u in QuotaRepository(conn).usage()])


@router.put("/quotas/{tenant_id}", response_model=QuotaOut, summary="Set a tenant's quota")
def set_quota(request: Request, tenant_id: TenantId, body: QuotaIn) -> QuotaOut:
    with transaction(api_state(request).engine) as conn:
        repo = QuotaRepository(conn)
        repo.set(
            Quota(tenant_id, body.max_queued, body.max_running, body.weight),
            origin=origin_of(request),
        )
        return _usage_of(repo, tenant_id)


@router.delete("/quotas/{tenant_id}", status_code=204, summary="Remove a tenant's quota")
def delete_quota(request: Request, tenant_id: TenantId) -> Response:
    with transaction(api_state(request).engine) as conn:
        if not QuotaRepository(conn).delete(tenant_id, origin=origin_of(request)):
            raise QuotaNotFound(f"tenant {tenant_id!r} has no quota")
    return Response(status_code=204)


@router.get("/fair-queues", response_model=FairQueueList, summary="Fair-shared queues")
def list_fair_queues(request: Request) -> FairQueueList:
    with transaction(api_state(request).engine) as conn:
        return FairQueueList(items=[FairQueueOut.of(u) for u in QuotaRepository(conn).fair_usage()])


@router.put("/fair-queues/{queue}", response_model=FairQueueOut, summary="Share a queue fairly")
def set_fair_queue(request: Request, queue: QueueName, body: FairQueueIn) -> FairQueueOut:
    with transaction(api_state(request).engine) as conn:
        repo = QuotaRepository(conn)
        repo.set_fair_queue(queue, body.max_in_flight, origin=origin_of(request))
        [usage] = [u for u in repo.fair_usage() if u.fair.queue == queue]
        return FairQueueOut.of(usage)


@router.delete("/fair-queues/{queue}", status_code=204, summary="Stop sharing a queue fairly")
def delete_fair_queue(request: Request, queue: QueueName) -> Response:
    with transaction(api_state(request).engine) as conn:
        if not QuotaRepository(conn).delete_fair_queue(queue, origin=origin_of(request)):
            raise QuotaNotFound(f"queue {queue!r} is not fair-shared")
    return Response(status_code=204)


@tenant_router.get(
    "/quotas/{tenant_id}", response_model=QuotaOut, summary="A tenant's quota and usage"
)
def get_quota(
    request: Request, tenant_id: TenantId, key: Annotated[ApiKey, Depends(require(JOBS_READ))]
) -> QuotaOut:
    tenant = acting_tenant(key, tenant_id)
    with transaction(api_state(request).engine) as conn:
        found = [u for u in QuotaRepository(conn).usage() if u.quota.tenant_id == tenant]
    if not found:
        raise QuotaNotFound(f"tenant {tenant!r} has no quota")
    return QuotaOut.of(found[0])
