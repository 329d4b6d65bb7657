"""The backfill statements (``store.backfill_queries``) as calls returning the model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from jobengine.backfills.model import (
    Backfill,
    BackfillSpec,
    BackfillStatus,
    CadenceSpec,
    JobTemplate,
    Pacing,
    Plan,
    Progress,
    Source,
)
from jobengine.domain.status import JobStatus
from jobengine.store import backfill_queries as q
from jobengine.store.database import run_all, run_statement

QUEUED = (JobStatus.PENDING.value, JobStatus.SCHEDULED.value)
RUNNING = (JobStatus.CLAIMED.value, JobStatus.RUNNING.value)
EARLIEST = datetime.min.replace(tzinfo=UTC)


def _cadence(row: dict[str, Any]) -> CadenceSpec:
    return CadenceSpec(cron=row["cron"], interval_seconds=row["interval_seconds"], zone=row["zone"])


def source_of(row: dict[str, Any]) -> Source:
    return Source(
        id=row["id"],
        tenant_id=row["tenant_id"],
        project_id=row["project_id"],
        name=row["name"],
        cadence=_cadence(row),
        watermark=row["watermark"],
        held_at=row["held_at"],
        held_by_job=row.get("held_by_job"),
        held_by_status=row.get("held_by_status"),
        last_slot=row["last_slot"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def backfill_of(row: dict[str, Any]) -> Backfill:
    return Backfill(
        id=row["id"],
        source=row["source"],
        source_id=row["source_id"],
        tenant_id=row["tenant_id"],
        project_id=row["project_id"],
        cadence=_cadence(row),
        start=row["range_start"],
        end=row["range_end"],
        job=JobTemplate(
            type=row["job_type"],
            payload=row["payload"],
            queue=row["queue"],
            priority=row["priority"],
        ),
        pacing=Pacing(max_in_flight=row["max_in_flight"], max_per_second=row["max_per_second"]),
        status=BackfillStatus(row["status"]),
        slots_total=row["slots_total"],
        slots_created=row["slots_created"],
        slots_existing=row["slots_existing"],
        first_slot=row["first_slot"],
        last_slot=row["last_slot"],
        cursor=row["cursor"],
        last_error=row["last_error"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
    )


class BackfillRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def upsert_source(self, spec: BackfillSpec) -> Source:
        row = run_statement(
            self.conn,
            q.UPSERT_SOURCE,
            {
                "tenant_id": spec.tenant_id,
                "project_id": spec.project_id,
                "name": spec.source,
                "cron": spec.cadence.cron,
                "interval_seconds": spec.cadence.interval_seconds,
                "zone": spec.cadence.zone,
            },
        )
        assert row is not None
        return source_of(row)

    def find_source(self, tenant_id: str, project_id: str, name: str) -> Source | None:
        row = run_statement(
            self.conn,
            q.FIND_SOURCE,
            {"tenant_id": tenant_id, "project_id": project_id, "name": name},
        )
        return None if row is None else source_of(row)

    def sources(self, tenant_id: str | None, name: str | None, limit: int) -> list[Source]:
        rows = run_all(
            self.conn, q.LIST_SOURCES, {"tenant_id": tenant_id, "name": name, "limit": limit}
        )
        return [source_of(row) for row in rows]

    def insert(self, source: Source, spec: BackfillSpec, plan: Plan, created_by: str) -> int:
        status = BackfillStatus.CREATING if plan.total else BackfillStatus.CREATED
        row = run_statement(
            self.conn,
            q.INSERT_BACKFILL,
            {
                "source_id": source.id,
                "start": spec.start,
                "end": spec.end,
                "job_type": spec.job.type,
                "queue": spec.job.queue,
                "priority": spec.job.priority,
                "payload": json.dumps(spec.job.payload, separators=(",", ":")),
                "max_in_flight": spec.pacing.max_in_flight,
                "max_per_second": spec.pacing.max_per_second,
                "status": status.value,
                "total": plan.total,
                "first": plan.first,
                "last": plan.last,
                "created_by": created_by,
            },
        )
        assert row is not None
        return int(row["id"])

    def get(self, backfill_id: int, tenant_id: str | None) -> Backfill | None:
        row = run_statement(self.conn, q.GET_BACKFILL, {"id": backfill_id, "tenant_id": tenant_id})
        return None if row is None else backfill_of(row)

    def page(
        self,
        *,
        tenant_id: str | None,
        source: str | None,
        status: BackfillStatus | None,
        before: int | None,
        limit: int,
    ) -> list[Backfill]:
        rows = run_all(
            self.conn,
            q.LIST_BACKFILLS,
            {
                "tenant_id": tenant_id,
                "source": source,
                "status": None if status is None else status.value,
                "before": before,
                "limit": limit,
            },
        )
        return [backfill_of(row) for row in rows]

    def creating(self, limit: int) -> list[int]:
        return [int(r["id"]) for r in run_all(self.conn, q.CREATING_BACKFILLS, {"limit": limit})]

    def lock(self, backfill_id: int) -> Backfill | None:
        row = run_statement(self.conn, q.LOCK_BACKFILL, {"id": backfill_id})
        return None if row is None else backfill_of(row)

    def open_slots(self, backfill_id: int) -> int:
        """The backfill's jobs not yet final, once those seen final are settled."""
        run_all(self.conn, q.SETTLE_SLOTS, {"backfill_id": backfill_id})
        row = run_statement(self.conn, q.OPEN_SLOTS, {"backfill_id": backfill_id})
        assert row is not None
        return int(row["n"])

    def lock_source(self, source_id: int) -> None:
        run_all(self.conn, q.LOCK_SOURCE, {"source_id": source_id})

    def existing(self, source_id: int, slots: Sequence[datetime]) -> dict[datetime, int]:
        rows = run_all(self.conn, q.EXISTING_SLOTS, {"source_id": source_id, "slots": list(slots)})
        return {row["slot_at"]: int(row["job_id"]) for row in rows}

    def insert_slots(
        self,
        source_id: int,
        backfill_id: int,
        slots: Sequence[datetime],
        job_ids: Sequence[int],
    ) -> int:
        rows = run_all(
            self.conn,
            q.INSERT_SLOTS,
            {
                "source_id": source_id,
                "backfill_id": backfill_id,
                "slots": list(slots),
                "job_ids": list(job_ids),
            },
        )
        run_all(
            self.conn,
            q.AFTER_INSERT,
            {"source_id": source_id, "first": min(slots), "last": max(slots)},
        )
        return len(rows)

    def advance(
        self, backfill_id: int, cursor: datetime | None, created: int, existing: int
    ) -> None:
        run_all(
            self.conn,
            q.ADVANCE_BACKFILL,
            {"id": backfill_id, "cursor": cursor, "created": created, "existing": existing},
        )

    def record_error(self, backfill_id: int, error: str) -> None:
        run_all(self.conn, q.RECORD_ERROR, {"id": backfill_id, "error": error})

    def cancel(self, backfill_id: int) -> bool:
        return bool(run_all(self.conn, q.CANCEL_BACKFILL, {"id": backfill_id}))

    def queued_jobs(self, backfill_id: int) -> list[int]:
        rows = run_all(self.conn, q.QUEUED_JOBS_OF, {"backfill_id": backfill_id})
        return [int(row["job_id"]) for row in rows]

    def progress(self, backfill: Backfill) -> Progress:
        rows = run_all(
            self.conn,
            q.PROGRESS,
            {"source_id": backfill.source_id, "start": backfill.start, "end": backfill.end},
        )
        by = {row["status"]: int(row["n"]) for row in rows}
        return Progress(
            total=backfill.slots_total,
            created=backfill.slots_created,
            existing=backfill.slots_existing,
            queued=sum(by.get(s, 0) for s in QUEUED),
            running=sum(by.get(s, 0) for s in RUNNING),
            completed=by.get(JobStatus.COMPLETED.value, 0),
            failed=by.get(JobStatus.FAILED.value, 0),
            cancelled=by.get(JobStatus.CANCELLED.value, 0),
        )

    def existing_in_range(self, source_id: int, start: datetime, end: datetime) -> int:
        row = run_statement(
            self.conn, q.EXISTING_IN_RANGE, {"source_id": source_id, "start": start, "end": end}
        )
        assert row is not None
        return int(row["n"])

    def sources_behind(self, limit: int) -> list[dict[str, Any]]:
        return run_all(self.conn, q.SOURCES_BEHIND, {"limit": limit})

    def slots_after(
        self, source_id: int, after: datetime | None, limit: int
    ) -> list[tuple[datetime, str]]:
        rows = run_all(
            self.conn,
            q.SLOTS_AFTER,
            {"source_id": source_id, "after": after or EARLIEST, "limit": limit},
        )
        return [(row["slot_at"], row["status"]) for row in rows]

    def set_watermark(
        self,
        source_id: int,
        was: datetime | None,
        watermark: datetime | None,
        held_at: datetime | None,
    ) -> None:
        run_all(
            self.conn,
            q.SET_WATERMARK,
            {"source_id": source_id, "was": was, "watermark": watermark, "held_at": held_at},
        )
