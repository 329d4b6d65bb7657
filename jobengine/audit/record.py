"""Writing entries: in the act's own transaction when it is done, in a fresh one when refused.

``detail`` says what changed (before and after where it matters) and never carries a
secret: callers pass fields they chose, and ``record`` drops any key whose name says it
holds one, as a second line of defence.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from jobengine.audit.actions import action as action_named
from jobengine.audit.origin import Origin
from jobengine.audit.queries import INSERT_ENTRY, INSERT_ENTRY_JOBS
from jobengine.store.database import transaction

log = structlog.get_logger("jobengine.audit")

_SECRET_WORDS = ("secret", "token", "password", "authorization", "plaintext", "api_key")


def _scrubbed(detail: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in detail.items() if not any(word in k.lower() for word in _SECRET_WORDS)}


def record(
    conn: Connection,
    origin: Origin,
    action: str,
    *,
    object_id: str | int | None = None,
    tenant: str | None = None,
    detail: Mapping[str, Any] | None = None,
    job_ids: Iterable[int] = (),
    refused: str | None = None,
) -> int:
    """Append one entry in ``conn``'s transaction and return its id. ``refused`` is the
    error code of a refusal; ``tenant`` the tenant the object belongs to (None: fleet-wide)."""
    act = action_named(action)
    row = conn.exec_driver_sql(
        INSERT_ENTRY,
        {
            "actor": origin.actor,
            "surface": origin.surface,
            "action": act.name,
            "object_kind": act.object_kind,
            "object_id": None if object_id is None else str(object_id),
            "tenant": tenant,
            "client_addr": origin.client_addr,
            "outcome": "refused" if refused else "done",
            "reason": refused,
            "detail": json.dumps(_scrubbed(detail or {}), sort_keys=True, default=str),
        },
    ).one()
    entry_id = int(row[0])
    attach_jobs(conn, entry_id, job_ids)
    return entry_id


def attach_jobs(conn: Connection, entry_id: int, job_ids: Iterable[int]) -> None:
    """Name more jobs an entry touched, in the transaction that touched them (a bulk act made
    of many transactions files its entry first, then each adds its jobs)."""
    jobs = sorted(set(job_ids))
    if jobs:
        conn.exec_driver_sql(INSERT_ENTRY_JOBS, {"entry_id": entry_id, "job_ids": jobs})


def record_refusal(
    engine: Engine,
    origin: Origin,
    action: str,
    code: str,
    *,
    object_id: str | int | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """File a refused act under the actor's own tenant (never the object's, which would tell
    that it exists elsewhere). A failure to write it is logged, not raised: the caller is
    already answering the refusal, and that answer must not change."""
    try:
        with transaction(engine) as conn:
            record(
                conn,
                origin,
                action,
                object_id=object_id,
                tenant=origin.tenant,
                detail=detail,
                refused=code,
            )
    except SQLAlchemyError as exc:
        log.error("audit.refusal_not_recorded", action=action, code=code, error=str(exc))
