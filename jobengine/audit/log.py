"""Reading the audit log: a filtered page, newest first, with the jobs each entry touched."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from jobengine.audit.queries import ENTRY_COLUMNS, JOBS_OF_ENTRIES, LIST_ENTRIES, LIST_FILTERS

JOBS_SHOWN = 100


@dataclass(frozen=True, slots=True)
class AuditFilter:
    tenant: str | None = None
    """Only this tenant's entries; a tenant key's reads always set it to the key's own."""
    actor: str | None = None
    action: str | None = None
    object_kind: str | None = None
    object_id: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    job_id: int | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    surface: str
    action: str
    object_kind: str
    object_id: str | None
    tenant: str | None
    client_addr: str | None
    outcome: str
    reason: str | None
    detail: dict[str, Any]
    job_ids: tuple[int, ...] = field(default=())
    """The first ``JOBS_SHOWN`` jobs the entry touched, by id."""
    more_jobs: bool = False


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[AuditEntry]
    next_before: int | None
    """Pass as ``before_id`` for the next (older) page; None on the last page."""


def list_entries(
    conn: Connection, flt: AuditFilter, *, before_id: int | None = None, limit: int = 100
) -> AuditPage:
    params: dict[str, Any] = {
        name: getattr(flt, name) for name in LIST_FILTERS if hasattr(flt, name)
    }
    params["before_id"] = before_id
    where = [LIST_FILTERS[name] for name, value in params.items() if value is not None]
    sql = LIST_ENTRIES.format(columns=ENTRY_COLUMNS, where=" AND ".join(where) or "TRUE")
    rows = conn.exec_driver_sql(sql, {**params, "limit": limit + 1}).mappings().all()
    more = len(rows) > limit
    rows = rows[:limit]
    jobs: dict[int, list[int]] = defaultdict(list)
    if rows:
        pairs = conn.exec_driver_sql(
            JOBS_OF_ENTRIES, {"entry_ids": [r["id"] for r in rows], "per_entry": JOBS_SHOWN + 1}
        ).mappings()
        for pair in pairs:
            jobs[int(pair["entry_id"])].append(int(pair["job_id"]))
    entries = [
        AuditEntry(
            **dict(r),
            job_ids=tuple(jobs[int(r["id"])][:JOBS_SHOWN]),
            more_jobs=len(jobs[int(r["id"])]) > JOBS_SHOWN,
        )
        for r in rows
    ]
    return AuditPage(entries=entries, next_before=entries[-1].id if more else None)
