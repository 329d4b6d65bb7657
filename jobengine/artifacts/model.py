"""An artifact as the engine hands it around: one row of ``artifacts``."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Artifact:
    id: int
    tenant_id: str
    job_id: int
    run_id: int | None
    name: str
    content_type: str
    size_bytes: int
    sha256: str
    storage_key: str
    """Where its bytes are in the storage; internal, never shown to API clients."""
    created_at: datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> Artifact:
        return cls(**{f.name: row[f.name] for f in fields(cls)})
