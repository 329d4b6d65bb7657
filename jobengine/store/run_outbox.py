"""Reading one run's events from the outbox, in the commit order every stream uses.

The outbox knows jobs, not runs, so a run's stream walks its tenant's events in ``(txid, id)``
order through ``ix_job_events_tenant_id_txid_id`` and keeps those of the run's jobs (each
checked by primary key). A poll reads at most a page of the tenant's events and reports how
far it read, matches or not: the stream moves on from there, so a quiet run among busy ones
costs each poll only the events committed since the last, never the tenant's history.

A stream starts at the run's first event (its submission's), which is found through the
run's jobs: events of a run's jobs are written only by transactions that saw the run, so
none sorts before it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from jobengine.store.database import run_all, run_statement
from jobengine.store.outbox import START, Position, StreamEvent, envelope_of

SCAN = """
-- name: run_outbox_scan  (ix_job_events_tenant_id_txid_id; pk_jobs per event; pk_job_events)
-- The next tenant events after a position (only from transactions older than the snapshot's
-- xmin, as every stream reads), the run's among them in full, and where the scan stopped.
WITH scanned AS (
    SELECT e.id, e.txid, e.job_id FROM job_events AS e
    WHERE e.tenant_id = %(tenant_id)s
      AND (e.txid, e.id) > (%(after_txid)s::text::xid8, %(after_id)s)
      AND e.txid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY e.txid, e.id
    LIMIT %(limit)s
),
last AS (
    SELECT txid::text::bigint AS txid, id, (SELECT count(*) FROM scanned) AS n
    FROM scanned ORDER BY txid DESC, id DESC LIMIT 1
)
SELECT e.id, e.txid::text::bigint AS txid, e.job_id, e.tenant_id, e.type, e.version, e.data,
       e.occurred_at, last.txid AS scanned_txid, last.id AS scanned_id, last.n AS scanned
FROM last
LEFT JOIN scanned AS s
       ON EXISTS (SELECT 1 FROM jobs AS j WHERE j.id = s.job_id AND j.run_id = %(run_id)s)
LEFT JOIN job_events AS e ON e.id = s.id
ORDER BY e.txid, e.id
"""

SETTLED = """
-- name: run_outbox_settled  (uq_jobs_run_id_run_key; ix_job_events_job_id_id per job)
-- Whether any event of the run's jobs, visible to streams yet or not, lies after a position.
-- Asked only once the run is final, so it runs a few times per stream, not per poll.
SELECT NOT EXISTS (
    SELECT 1 FROM jobs AS j JOIN job_events AS e ON e.job_id = j.id
    WHERE j.run_id = %(run_id)s
      AND (e.txid, e.id) > (%(after_txid)s::text::xid8, %(after_id)s)
) AS settled
"""

FIRST = """
-- name: run_outbox_first  (uq_jobs_run_id_run_key; ix_job_events_job_id_id)
-- The run's first event: that of its lowest job, written by the submitting transaction.
SELECT e.txid::text::bigint AS txid, e.id FROM job_events AS e
WHERE e.job_id = (SELECT min(id) FROM jobs WHERE run_id = %(run_id)s)
ORDER BY e.id
LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class RunPage:
    events: list[StreamEvent]
    scanned_to: Position
    """Where the next poll goes on from: the last event read, the run's or another's."""
    full: bool
    """The scan read a whole page: more may follow at once."""


class RunOutboxReader:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def page(self, run_id: int, tenant_id: str, after: Position, limit: int = 500) -> RunPage:
        rows = run_all(
            self._conn,
            SCAN,
            {
                "run_id": run_id,
                "tenant_id": tenant_id,
                "after_txid": after.txid,
                "after_id": after.event_id,
                "limit": limit,
            },
        )
        if not rows:
            return RunPage([], after, full=False)
        scanned = Position(int(rows[0]["scanned_txid"]), int(rows[0]["scanned_id"]))
        events = [
            StreamEvent(Position(r["txid"], r["id"]), r["job_id"], envelope_of(r))
            for r in rows
            if r["id"] is not None
        ]
        return RunPage(events, scanned, full=int(rows[0]["scanned"]) == limit)

    def settled(self, run_id: int, after: Position) -> bool:
        row = run_statement(
            self._conn,
            SETTLED,
            {"run_id": run_id, "after_txid": after.txid, "after_id": after.event_id},
        )
        return row is None or bool(row["settled"])

    def first(self, run_id: int) -> Position:
        """Just before the run's first event; the start of the outbox if it has none."""
        row = run_statement(self._conn, FIRST, {"run_id": run_id})
        if row is None:
            return START
        return Position(int(row["txid"]), int(row["id"]) - 1)
