"""``/api/v1/job-types``: the fleet's catalogue of job types, for producers that know a type
only by name and want its queue, defaults and payload schema. Reading needs ``jobs:read``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from jobengine.api.auth import require
from jobengine.api.errors import ApiError
from jobengine.api.keys import JOBS_READ, ApiKey
from jobengine.api.schemas import ERROR_RESPONSES, Name
from jobengine.api.schemas_types import JobTypeList, JobTypeOut
from jobengine.api.state import api_state
from jobengine.errors import UnknownJobType

router = APIRouter(prefix="/api/v1/job-types", tags=["job types"], responses=ERROR_RESPONSES)


class JobTypeNotFound(ApiError):
    status = 404
    code = "JOB_TYPE_NOT_FOUND"


@router.get("", response_model=JobTypeList, summary="Every job type in the catalogue, by name")
def list_job_types(
    request: Request, key: Annotated[ApiKey, Depends(require(JOBS_READ))]
) -> JobTypeList:
    return JobTypeList(items=[JobTypeOut.of(e) for e in api_state(request).types.entries()])


@router.get("/{name}", response_model=JobTypeOut, summary="One job type, its payload schema too")
def get_job_type(
    request: Request,
    name: Annotated[Name, Path(description="The job type's name.")],
    key: Annotated[ApiKey, Depends(require(JOBS_READ))],
) -> JobTypeOut:
    try:
        return JobTypeOut.of(api_state(request).types.entry(name))
    except UnknownJobType as exc:
        raise JobTypeNotFound(exc.message, hint=exc.hint) from None
