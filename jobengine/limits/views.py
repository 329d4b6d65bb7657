"""A limit as every surface shows it: the REST fields (camelCase), which ``--json`` prints too."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from jobengine.limits.registry import LimitStatus, StoredLimit


def limit_view(stored: StoredLimit, status: LimitStatus | None) -> dict[str, Any]:
    limit = stored.limit
    next_at = None if status is None else status.next_admission
    return {
        "name": limit.name,
        "scope": limit.scope.value,
        "jobType": limit.job_type,
        "keyPath": limit.key_path,
        "rate": limit.rate,
        "per": limit.per,
        "burst": limit.burst,
        "units": limit.units,
        "unitsPath": limit.units_path,
        "tokens": limit.burst if status is None else status.tokens,
        "waiting": 0 if status is None else status.waiting,
        "nextAdmissionAt": None if next_at is None else next_at.astimezone(UTC),
        "createdAt": stored.created_at,
        "updatedAt": stored.updated_at,
    }
