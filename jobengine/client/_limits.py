"""The rate limits' part of the client: its model and requests, shared by both clients."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from jobengine.client._base import Call


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A rate limit as ``/api/v1/limits`` shows it, with its state when it was read."""

    name: str
    scope: str
    job_type: str | None
    key_path: str | None
    rate: float
    per: str
    burst: int
    units: int
    units_path: str | None
    tokens: int
    waiting: int
    next_admission_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RateLimit:
        next_at = data.get("nextAdmissionAt")
        return cls(
            name=data["name"],
            scope=data["scope"],
            job_type=data.get("jobType"),
            key_path=data.get("keyPath"),
            rate=float(data["rate"]),
            per=data["per"],
            burst=int(data["burst"]),
            units=int(data["units"]),
            units_path=data.get("unitsPath"),
            tokens=int(data["tokens"]),
            waiting=int(data["waiting"]),
            next_admission_at=None if next_at is None else datetime.fromisoformat(next_at),
            created_at=datetime.fromisoformat(data["createdAt"]),
            updated_at=datetime.fromisoformat(data["updatedAt"]),
        )


def limit_path(name: str | None = None) -> str:
    return "/limits" if name is None else f"/limits/{quote(name, safe='')}"


def set_limit_call(
    name: str,
    *,
    rate: float,
    burst: int,
    scope: str,
    per: str,
    job_type: str | None,
    key_path: str | None,
    units: int,
    units_path: str | None,
) -> Call:
    body = {
        "scope": scope,
        "jobType": job_type,
        "keyPath": key_path,
        "rate": rate,
        "per": per,
        "burst": burst,
        "units": units,
        "unitsPath": units_path,
    }
    return Call("PUT", limit_path(name), json=body, repeatable=True)
