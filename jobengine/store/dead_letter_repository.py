"""Reading and tending dead letters. Entries are created and closed by the guard's statements
(a final failure writes one, a replay closes it); this repository adds what operators do."""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, func, or_, select

from jobengine.domain.dead_letter import (
    DeadLetter,
    DeadLetterReason,
    DeadLetterReplay,
    DeadLetterStatus,
    ReplayOutcome,
)
from jobengine.domain.status import JobStatus
from jobengine.store import queries
from jobengine.store.models import DeadLetterRow

_letters = DeadLetterRow.__table__

_OUTCOMES = {
    None: ReplayOutcome.IN_FLIGHT,
    JobStatus.COMPLETED.value: ReplayOutcome.COMPLETED,
    JobStatus.FAILED.value: ReplayOutcome.FAILED_AGAIN,
    JobStatus.CANCELLED.value: ReplayOutcome.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which entries an operator means; every field narrows, empty means any."""

    tenant_id: str | None = None
    types: Sequence[str] = ()
    queues: Sequence[str] = ()
    reasons: Sequence[DeadLetterReason] = ()
    error_classes: Sequence[str] = ()
    """Fully qualified (``mod.Class``) or bare class names."""
    statuses: Sequence[DeadLetterStatus] = (DeadLetterStatus.OPEN,)
    failed_from: datetime | None = None
    failed_to: datetime | None = None
    max_id: int | None = None
    """Entries up to this id only: a bulk replay fixes its set when it starts."""


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    items: list[DeadLetter]
    next_cursor: int | None
    """Pass back as ``after_id`` for the next page; None when this page was the last."""


@dataclass(frozen=True, slots=True)
class DeadLetterCount:
    reason: DeadLetterReason
    type: str
    count: int


def _letter(row: Mapping[Any, Any], replays: list[DeadLetterReplay] | None = None) -> DeadLetter:
    return DeadLetter(
        id=row["id"],
        job_id=row["job_id"],
        tenant_id=row["tenant_id"],
        project_id=row["project_id"],
        type=row["type"],
        queue=row["queue"],
        reason=DeadLetterReason(row["reason"]),
        error_code=row["error_code"],
        error_class=row["error_class"],
        error_message=row["error_message"],
        traceback=row["traceback"],
        attempts=row["attempts"],
        payload=row["payload"],
        timeline=list(row["timeline"] or []),
        first_failed_at=row["first_failed_at"],
        last_failed_at=row["last_failed_at"],
        status=DeadLetterStatus(row["status"]),
        status_changed_at=row["status_changed_at"],
        status_changed_by=row["status_changed_by"],
        status_reason=row["status_reason"],
        replay_count=row["replay_count"],
        job_status=JobStatus(row["job_status"]) if row.get("job_status") else None,
        error_details=dict(row.get("error_details") or {}),
        replays=replays or [],
    )


TOTAL_CAP = 10_000
"""Entries a listing counts before it says "at least" instead of an exact total."""


@dataclass(frozen=True, slots=True)
class DeadLetterTotal:
    count: int
    exact: bool
    """False: at least ``count`` entries match (counting stopped at the cap)."""

    def label(self) -> str:
        return f"{self.count}" if self.exact else f"at least {self.count}"


def _matching(query: Select[Any], flt: DeadLetterFilter) -> Select[Any]:
    c = _letters.c
    if flt.max_id is not None:
        query = query.where(c.id <= flt.max_id)
    if flt.tenant_id is not None:
        query = query.where(c.tenant_id == flt.tenant_id)
    if flt.statuses:
        query = query.where(c.status.in_([s.value for s in flt.statuses]))
    if flt.types:
        query = query.where(c.type.in_(list(flt.types)))
    if flt.queues:
        query = query.where(c.queue.in_(list(flt.queues)))
    if flt.reasons:
        query = query.where(c.reason.in_([r.value for r in flt.reasons]))
    if flt.error_classes:
        query = query.where(
            or_(
                *(
                    (c.error_class == name) | (c.error_class.endswith(f".{name}", autoescape=True))
                    for name in flt.error_classes
                )
            )
        )
    if flt.failed_from is not None:
        query = query.where(c.last_failed_at >= flt.failed_from)
    if flt.failed_to is not None:
        query = query.where(c.last_failed_at < flt.failed_to)
    return query


class DeadLetterRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self, dead_letter_id: int) -> DeadLetter | None:
        """One entry with its replays and their outcomes."""
        row = self._one(queries.GET_DEAD_LETTER, {"id": dead_letter_id})
        if row is None:
            return None
        return _letter(row, self.replays(dead_letter_id))

    def lock(self, dead_letter_id: int) -> DeadLetter | None:
        row = self._one(queries.LOCK_DEAD_LETTER, {"id": dead_letter_id})
        return None if row is None else _letter(row)

    def id_for_job(self, job_id: int) -> int | None:
        row = self._one(queries.DEAD_LETTER_OF_JOB, {"job_id": job_id})
        return None if row is None else int(row["id"])

    def replays(self, dead_letter_id: int) -> builtins.list[DeadLetterReplay]:
        rows = self._conn.exec_driver_sql(
            queries.DEAD_LETTER_REPLAYS, {"id": dead_letter_id}
        ).mappings()
        return [
            DeadLetterReplay(
                id=r["id"],
                dead_letter_id=r["dead_letter_id"],
                job_id=r["job_id"],
                history_id=r["history_id"],
                actor=r["actor"],
                reason=r["reason"],
                attempt=r["attempt"],
                payload_patch=r["payload_patch"],
                fresh_budget=r["fresh_budget"],
                at=r["at"],
                outcome=_OUTCOMES[r["outcome"]],
            )
            for r in rows
        ]

    def list(self, flt: DeadLetterFilter, *, after_id: int = 0, limit: int = 100) -> DeadLetterPage:
        """Entries matching ``flt`` in ascending id order, a page at a time (keyset)."""
        c = _letters.c
        query = _matching(select(_letters).where(c.id > after_id), flt)
        rows = self._conn.execute(query.order_by(c.id).limit(limit + 1)).mappings().all()
        items = [_letter(r) for r in rows[:limit]]
        return DeadLetterPage(items=items, next_cursor=items[-1].id if len(rows) > limit else None)

    def total(self, flt: DeadLetterFilter, cap: int = TOTAL_CAP) -> DeadLetterTotal:
        """How many entries match ``flt``, counted up to ``cap``: past it the count would read
        every matching row, so the answer is a lower bound, said to be one."""
        matching = _matching(select(_letters.c.id), flt).limit(cap + 1).subquery()
        counted = int(self._conn.execute(select(func.count()).select_from(matching)).scalar_one())
        return DeadLetterTotal(count=min(counted, cap), exact=counted <= cap)

    def max_id(self) -> int:
        found = self._conn.execute(select(_letters.c.id).order_by(_letters.c.id.desc()).limit(1))
        return int(found.scalar() or 0)

    def prepare_replay(self, job_id: int, budget_start_attempt: int, payload: Any) -> bool:
        row = self._one(
            queries.PREPARE_REPLAY,
            {
                "job_id": job_id,
                "budget_start_attempt": budget_start_attempt,
                "payload": None if payload is None else json.dumps(payload),
            },
        )
        return row is not None

    def record_replay(
        self,
        entry: DeadLetter,
        *,
        actor: str,
        reason: str | None,
        attempt: int,
        payload_patch: dict[str, Any] | None,
        fresh_budget: bool,
    ) -> int:
        row = self._one(
            queries.RECORD_REPLAY,
            {
                "dead_letter_id": entry.id,
                "job_id": entry.job_id,
                "actor": actor,
                "reason": reason,
                "attempt": attempt,
                "payload_patch": None if payload_patch is None else json.dumps(payload_patch),
                "fresh_budget": fresh_budget,
            },
        )
        assert row is not None
        return int(row["id"])

    def discard(self, dead_letter_id: int, actor: str, reason: str | None) -> bool:
        row = self._one(
            queries.DISCARD_DEAD_LETTER, {"id": dead_letter_id, "actor": actor, "reason": reason}
        )
        return row is not None

    def purge(self, before: datetime) -> int:
        rows = self._conn.exec_driver_sql(queries.PURGE_DEAD_LETTERS, {"before": before}).all()
        return len(rows)

    def counts(self) -> builtins.list[DeadLetterCount]:
        rows = self._conn.exec_driver_sql(queries.DEAD_LETTER_COUNTS).mappings()
        return [DeadLetterCount(DeadLetterReason(r["reason"]), r["type"], r["n"]) for r in rows]

    def _one(self, sql: str, params: Mapping[str, Any]) -> Mapping[Any, Any] | None:
        return self._conn.exec_driver_sql(sql, dict(params)).mappings().first()
