"""``/api/v1/limits``: the fleet's rate limits, with each one's tokens and waiting jobs now.

Admin keys only: a limit holds back every tenant's jobs of its type, which is the operator's
decision. A limit set here is applied by every submitting process within a few seconds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import Field

from jobengine.api.auth import require
from jobengine.api.errors import ApiError
from jobengine.api.keys import ADMIN
from jobengine.api.schemas import ERROR_RESPONSES, ApiModel, Name, RequestModel
from jobengine.api.state import api_state
from jobengine.audit.rest import origin_of
from jobengine.limits import registry
from jobengine.limits.definition import RateLimit, parse_scope
from jobengine.limits.errors import RateLimitNotFound
from jobengine.limits.registry import LimitStatus, StoredLimit
from jobengine.limits.views import limit_view
from jobengine.store.database import transaction

router = APIRouter(
    prefix="/api/v1/limits",
    tags=["rate limits"],
    responses=ERROR_RESPONSES,
    dependencies=[Depends(require(ADMIN))],
)

LimitName = Annotated[
    str, Path(description="The limit's name.", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
]


class LimitNotFound(ApiError):
    status = 404
    code = RateLimitNotFound.code
    hint = RateLimitNotFound.hint


class LimitIn(RequestModel):
    scope: Literal["type", "tenant", "key"] = Field(
        description="type: one bucket for every job of jobType; tenant: one per tenant (of "
        "jobType, or of every type); key: one per value at keyPath in jobType's payloads."
    )
    job_type: Name | None = None
    key_path: Name | None = Field(
        default=None,
        description="Dotted path or JSON Pointer into the payload.",
        examples=["account_id"],
    )
    rate: float = Field(gt=0, description="Tokens added per `per`.", examples=[10])
    per: Literal["second", "minute", "hour"] = "second"
    burst: int = Field(ge=1, le=1_000_000, description="The bucket's capacity.", examples=[5])
    units: int = Field(default=1, ge=1, description="Tokens one job costs.")
    units_path: Name | None = Field(
        default=None, description="Where a job's payload may say how many tokens it costs."
    )


class LimitOut(ApiModel):
    name: str
    scope: str
    job_type: str | None
    key_path: str | None
    rate: float
    per: str
    burst: int
    units: int
    units_path: str | None
    tokens: int = Field(description="Tokens now in the emptiest of its buckets.")
    waiting: int = Field(description="Units booked beyond its buckets: jobs waiting for it.")
    next_admission_at: datetime | None = Field(
        description="When the next waiting job is admitted; null when none waits."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, stored: StoredLimit, status: LimitStatus | None) -> LimitOut:
        return cls.model_validate(limit_view(stored, status))


class LimitList(ApiModel):
    items: list[LimitOut]


def _views(request: Request, name: str | None = None) -> list[LimitOut]:
    with transaction(api_state(request).engine) as conn:
        try:
            stored = [registry.get_limit(conn, name)] if name else registry.list_limits(conn)
        except RateLimitNotFound as exc:
            raise LimitNotFound(exc.message) from None
        statuses = {s.name: s for s in registry.statuses(conn)}
    return [LimitOut.of(s, statuses.get(s.limit.name)) for s in stored]


@router.get("", response_model=LimitList, summary="Every rate limit, with its state now")
def list_limits(request: Request) -> LimitList:
    return LimitList(items=_views(request))


@router.get("/{name}", response_model=LimitOut, summary="One rate limit, with its state now")
def get_limit(request: Request, name: LimitName) -> LimitOut:
    return _views(request, name)[0]


@router.put("/{name}", response_model=LimitOut, summary="Create or replace a rate limit")
def put_limit(request: Request, name: LimitName, body: LimitIn) -> LimitOut:
    limit = RateLimit(
        name=name,
        scope=parse_scope(body.scope),
        rate=body.rate,
        per=body.per,
        burst=body.burst,
        job_type=body.job_type,
        key_path=body.key_path,
        units=body.units,
        units_path=body.units_path,
    )
    with transaction(api_state(request).engine) as conn:
        registry.set_limit(conn, limit, origin=origin_of(request))
    return _views(request, name)[0]


@router.delete(
    "/{name}",
    status_code=204,
    summary="Delete a rate limit; jobs waiting for it keep their slots",
)
def delete_limit(request: Request, name: LimitName) -> Response:
    with transaction(api_state(request).engine) as conn:
        try:
            registry.delete_limit(conn, name, origin=origin_of(request))
        except RateLimitNotFound as exc:
            raise LimitNotFound(exc.message) from None
    return Response(status_code=204)
