"""Reading the outbox in commit order, for streams that resume with no gap and no duplicate.

Outbox ids are taken before commit, so ``id > last`` can pass over a row that commits late.
Positions here are ``(txid, id)``: a page holds only events of transactions older than the
reading snapshot's ``xmin`` (all of them have ended), so every event that will ever sort before
the last one delivered is already visible. See migration 0006.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from jobengine.domain.events import EventEnvelope, ProgressEvent, TimelineEvent
from jobengine.errors import ValidationError
from jobengine.store import queries
from jobengine.store.database import run_all, run_statement

_POSITION = re.compile(r"^(\d{1,19})-(\d{1,19})$")
_MAX_BIGINT = 2**63 - 1


class BadPosition(ValidationError):
    code = "BAD_EVENT_ID"
    hint = "Resume with the id of an event this stream sent, shaped <txid>-<eventId>."


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where a stream stands: the last event delivered, as (writing transaction, outbox id)."""

    txid: int
    event_id: int

    def __str__(self) -> str:
        return f"{self.txid}-{self.event_id}"

    @classmethod
    def parse(cls, text: str) -> Position:
        match = _POSITION.match(text.strip())
        if match is None:
            raise BadPosition(f"event id {text[:40]!r} is not <txid>-<eventId>")
        txid, event_id = int(match.group(1)), int(match.group(2))
        if txid > _MAX_BIGINT or event_id > _MAX_BIGINT:
            raise BadPosition(f"event id {text[:40]!r} is out of range")
        return cls(txid, event_id)


START = Position(0, 0)
"""Before every event."""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    position: Position
    job_id: int
    envelope: EventEnvelope


@dataclass(frozen=True, slots=True)
class StreamScope:
    """Which events a stream carries: one job's, one tenant's, or (both None) everyone's."""

    job_id: int | None = None
    tenant_id: str | None = None


def envelope_of(row: dict[str, Any]) -> EventEnvelope:
    """An outbox row as the envelope streams carry."""
    event: TimelineEvent | ProgressEvent = (
        TimelineEvent.model_validate(row["data"])
        if row["type"] == "job.transition"
        else ProgressEvent.model_validate(row["data"])
    )
    return EventEnvelope(
        id=row["id"],
        tenant_id=row["tenant_id"],
        occurred_at=row["occurred_at"],
        type=row["type"],
        event=event,
    )


class OutboxReader:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def page(self, scope: StreamScope, after: Position, limit: int = 500) -> list[StreamEvent]:
        """The next events of ``scope`` after ``after`` in ``(txid, id)`` order."""
        params: dict[str, Any] = {
            "after_txid": after.txid,
            "after_id": after.event_id,
            "limit": limit,
        }
        if scope.job_id is not None:
            sql, params["job_id"] = queries.OUTBOX_JOB, scope.job_id
        elif scope.tenant_id is not None:
            sql, params["tenant_id"] = queries.OUTBOX_TENANT, scope.tenant_id
        else:
            sql = queries.OUTBOX_ALL
        return [
            StreamEvent(Position(r["txid"], r["id"]), r["job_id"], envelope_of(r))
            for r in run_all(self._conn, sql, params)
        ]

    def job_settled(self, job_id: int, after: Position) -> bool:
        """True when the job is final and no event of it, visible or not, lies after ``after``:
        a one-job stream may end."""
        row = run_statement(
            self._conn,
            queries.OUTBOX_JOB_SETTLED,
            {"job_id": job_id, "after_txid": after.txid, "after_id": after.event_id},
        )
        return row is None or bool(row["settled"])

    def head(self) -> Position:
        """The position of now: a stream starting here sees only events committed later."""
        row = run_statement(self._conn, queries.OUTBOX_HEAD, {})
        assert row is not None
        return Position(int(row["txid"]), 0)
