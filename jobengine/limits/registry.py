"""Setting, listing and deleting limits, in the caller's transaction.

A limit set or changed reaches every process within the cache's few seconds (see ``cache``).
Jobs already waiting keep the slots they took: a changed rate or burst applies to slots taken
from then on, and a deleted limit's waiting jobs keep their ``not_before`` (they are admitted
at the slot they were given, never earlier, so deleting a limit cannot release a flood).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping

from jobengine.audit import Origin, record
from jobengine.limits.cache import cache_of
from jobengine.limits.definition import RateLimit, check, limit_from_row
from jobengine.limits.errors import RateLimitNotFound
from jobengine.store import limits_queries as q


@dataclass(frozen=True, slots=True)
class StoredLimit:
    limit: RateLimit
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """A limit's state now: tokens in its emptiest busy bucket, units waiting beyond its
    buckets, and when the next of them is admitted (None when none waits)."""

    name: str
    burst: int
    tokens: int
    waiting: int
    next_admission: datetime | None


def _stored(row: RowMapping) -> StoredLimit:
    return StoredLimit(limit_from_row(row), row["created_at"], row["updated_at"])


def set_limit(conn: Connection, limit: RateLimit, *, origin: Origin | None = None) -> StoredLimit:
    """Create or replace ``limit`` by its name; refused before anything is written.
    ``origin`` (here and in ``delete_limit``) files the act in the audit log, in ``conn``'s
    transaction, with the limit as it was and as it is."""
    check(limit)
    before = _audit_view(conn, limit.name) if origin is not None else None
    params = {
        "name": limit.name,
        "scope": limit.scope.value,
        "job_type": limit.job_type,
        "key_path": limit.key_path,
        "rate": limit.rate,
        "per": limit.per,
        "burst": limit.burst,
        "units": limit.units,
        "units_path": limit.units_path,
    }
    row = conn.exec_driver_sql(q.SET_LIMIT, params).mappings().one()
    cache_of(conn).forget()
    if origin is not None:
        detail = {"before": before, "after": params}
        record(conn, origin, "limit.set", object_id=limit.name, detail=detail)
    return _stored(row)


def list_limits(conn: Connection) -> list[StoredLimit]:
    return [_stored(r) for r in conn.exec_driver_sql(q.LIST_LIMITS).mappings()]


def get_limit(conn: Connection, name: str) -> StoredLimit:
    row = conn.exec_driver_sql(q.GET_LIMIT, {"name": name}).mappings().first()
    if row is None:
        raise RateLimitNotFound(name)
    return _stored(row)


def delete_limit(conn: Connection, name: str, *, origin: Origin | None = None) -> None:
    """Delete ``name`` and its buckets; its waiting jobs keep their slots (see above)."""
    before = _audit_view(conn, name) if origin is not None else None
    if conn.exec_driver_sql(q.DELETE_LIMIT, {"name": name}).first() is None:
        raise RateLimitNotFound(name)
    cache_of(conn).forget()
    if origin is not None:
        record(conn, origin, "limit.delete", object_id=name, detail={"before": before})


def _audit_view(conn: Connection, name: str) -> dict[str, Any] | None:
    """The limit ``name`` as an audit entry shows it; None when there is none."""
    row = conn.exec_driver_sql(q.GET_LIMIT, {"name": name}).mappings().first()
    if row is None:
        return None
    fields = ("scope", "job_type", "key_path", "rate", "per", "burst", "units", "units_path")
    return {"name": name, **{f: row[f] for f in fields}}


def statuses(conn: Connection) -> list[LimitStatus]:
    return [
        LimitStatus(
            name=r["name"],
            burst=int(r["burst"]),
            tokens=int(r["tokens"]),
            waiting=int(r["waiting"]),
            next_admission=r["next_admission"],
        )
        for r in conn.exec_driver_sql(q.LIMIT_STATUS).mappings()
    ]
