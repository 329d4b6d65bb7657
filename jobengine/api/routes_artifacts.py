"""Artifacts through the API: listed per job and per run, downloaded as a stream.

Tenant-scoped as the job routes are: a job or run of another tenant is answered like one that
does not exist (404, never 403), and reading needs ``jobs:read``. A download streams from the
storage a chunk at a time, with the ``Content-Length`` and the sha256 (as its ``ETag``) that
were recorded when the artifact was attached, so a client can check what it received.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.responses import StreamingResponse

from jobengine.api.auth import require, visible
from jobengine.api.keys import JOBS_READ, ApiKey
from jobengine.api.routes_jobs import JobId
from jobengine.api.schemas import ERROR_RESPONSES
from jobengine.api.schemas_artifacts import ArtifactList, ArtifactOut
from jobengine.api.state import api_state
from jobengine.artifacts.errors import ArtifactNotFound
from jobengine.runs.service import get_run
from jobengine.store.artifacts_repository import ArtifactsRepository
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import JobsRepository

router = APIRouter(prefix="/api/v1", tags=["artifacts"], responses=ERROR_RESPONSES)

RunId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The run's id.")]
ArtifactName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="The name the handler attached it under.",
    ),
]


@router.get(
    "/jobs/{job_id}/artifacts", response_model=ArtifactList, summary="A job's artifacts, by name"
)
def job_artifacts(
    request: Request, job_id: JobId, key: Annotated[ApiKey, Depends(require(JOBS_READ))]
) -> ArtifactList:
    with transaction(api_state(request).engine) as conn:
        visible(key, JobsRepository(conn).get(job_id))
        found = ArtifactsRepository(conn).of_job(job_id)
    return ArtifactList(items=[ArtifactOut.of(a) for a in found])


@router.get(
    "/jobs/{job_id}/artifacts/{name}",
    response_class=StreamingResponse,
    summary="Download one artifact",
    responses={
        200: {
            "content": {"application/octet-stream": {}},
            "description": "The bytes, with the content type they were attached with; ETag "
            "is their sha256.",
        },
        304: {"description": "If-None-Match named this artifact's sha256."},
    },
)
def download_artifact(
    request: Request,
    job_id: JobId,
    name: ArtifactName,
    key: Annotated[ApiKey, Depends(require(JOBS_READ))],
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    state = api_state(request)
    with transaction(state.engine) as conn:
        visible(key, JobsRepository(conn).get(job_id))
        artifact = ArtifactsRepository(conn).get(job_id, name)
    if artifact is None:
        raise ArtifactNotFound(job_id, name)
    etag = f'"{artifact.sha256}"'
    headers = {
        "ETag": etag,
        "Content-Disposition": f'attachment; filename="{artifact.name}"',
    }
    if if_none_match is not None and etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers)
    chunks = state.artifacts.open(artifact.storage_key)
    headers["Content-Length"] = str(artifact.size_bytes)
    return StreamingResponse(_closing(chunks), media_type=artifact.content_type, headers=headers)


@router.get(
    "/runs/{run_id}/artifacts",
    response_model=ArtifactList,
    summary="Every artifact of a run's jobs, in the order they were attached",
)
def run_artifacts(
    request: Request, run_id: RunId, key: Annotated[ApiKey, Depends(require(JOBS_READ))]
) -> ArtifactList:
    with transaction(api_state(request).engine) as conn:
        get_run(conn, run_id, None if key.is_admin else key.tenant_id)
        found = ArtifactsRepository(conn).of_run(run_id)
    return ArtifactList(items=[ArtifactOut.of(a) for a in found])


def _closing(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The storage's stream, closed even when the client goes away mid-download."""
    try:
        yield from chunks
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
