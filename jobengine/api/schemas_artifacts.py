"""Artifacts' JSON shape (camelCase on the wire), shared by the API and the CLI's ``--json``."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field

from jobengine.api.schemas import ApiModel
from jobengine.artifacts.model import Artifact


class ArtifactOut(ApiModel):
    job_id: int
    run_id: int | None
    name: str
    content_type: str
    size_bytes: int
    sha256: str = Field(description="Lowercase hex; also the download's ETag.")
    created_at: datetime

    @classmethod
    def of(cls, artifact: Artifact) -> ArtifactOut:
        return cls(
            job_id=artifact.job_id,
            run_id=artifact.run_id,
            name=artifact.name,
            content_type=artifact.content_type,
            size_bytes=artifact.size_bytes,
            sha256=artifact.sha256,
            created_at=artifact.created_at.astimezone(UTC),
        )


class ArtifactList(ApiModel):
    items: list[ArtifactOut]
