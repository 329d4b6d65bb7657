"""What ``/metrics`` reads, at a cost that does not grow with history.

Transition counters are totals by step, folded from the outbox rather than counted per job: an
UPDATE of a counter row in every transition would be one hot row every worker waits on. A fold
locks the one cursor row, reads the events after it that streams could already see (from
transactions older than the snapshot's ``xmin``, in ``(txid, id)`` order, so no commit can ever
land behind the cursor: migration 0006), adds them to the totals and moves the cursor, in one
transaction. Two folds take turns on the cursor and never count an event twice; an event of a
transaction still open is simply counted by a later fold. The leader folds every tick and a
scrape folds what arrived since, a page at most.

Jobs by state: the live states are counted through their partial indexes (their number is
bounded by the backlog, not by history); a final state is its entries minus its exits minus
the jobs retention deleted from it, all three read from small tables. Runs by status are
counted from ``runs``, one row per run, however many jobs each holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from jobengine.domain.status import FINAL_STATES, JobStatus, RunStatus
from jobengine.errors import StoreError
from jobengine.store.database import run_all, run_statement, transaction

LEASE_EXPIRY_REASONS = ("lease_expired", "lease_expired_before_start")
"""Reasons the reaper records when it takes a lease back (``jobengine.reaper``)."""

FOLD_PAGE = 10_000
"""Events one fold reads at most: a scrape stays short however far the leader fell behind."""

LOCK_CURSOR = """
-- name: lock_totals_cursor  (pk_transition_totals_cursor)
-- Folds take turns here; the fold statement that follows (a new snapshot) then sees every
-- fold committed before this one.
SELECT txid::text AS txid, event_id FROM transition_totals_cursor WHERE id = 1 FOR UPDATE
"""

FOLD = """
-- name: fold_transitions  (ix_job_events_txid_id; pk_transition_totals)
WITH batch AS (
    SELECT txid, id, type, data FROM job_events
    WHERE (txid, id) > (%(txid)s::text::xid8, %(event_id)s)
      AND txid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY txid, id
    LIMIT %(limit)s
),
steps AS (
    SELECT coalesce(data->>'from_status', '') AS from_status, data->>'to_status' AS to_status,
           count(*) AS n,
           count(*) FILTER (WHERE data->>'reason' = ANY(%(lease_reasons)s::text[]))
               AS lease_expired
    FROM batch WHERE type = 'job.transition'
    GROUP BY 1, 2
),
added AS (
    INSERT INTO transition_totals AS t (from_status, to_status, n, lease_expired)
    SELECT from_status, to_status, n, lease_expired FROM steps
    ON CONFLICT (from_status, to_status) DO UPDATE
    SET n = t.n + EXCLUDED.n, lease_expired = t.lease_expired + EXCLUDED.lease_expired
    RETURNING 1
),
last AS (SELECT txid, id FROM batch ORDER BY txid DESC, id DESC LIMIT 1),
advanced AS (
    UPDATE transition_totals_cursor AS c
    SET txid = last.txid, event_id = last.id, folded_at = now()
    FROM last WHERE c.id = 1
    RETURNING 1
)
SELECT (SELECT count(*) FROM batch) AS events
"""

TOTALS = """
-- name: transition_totals  (a few dozen rows: one per step ever taken)
SELECT from_status, to_status, n, lease_expired FROM transition_totals
ORDER BY from_status, to_status
"""

PRUNED = """
-- name: pruned_jobs  (one row per final state)
SELECT status, n FROM pruned_jobs
"""

LIVE_JOBS = """
-- name: live_jobs_by_state  (ix_jobs_pending_id, ix_jobs_runnable, ix_jobs_lease_expiry)
-- Each count is read from a partial index holding only jobs in that state.
SELECT 'pending' AS status, count(*) AS n FROM jobs WHERE status = 'pending'
UNION ALL
SELECT 'scheduled', count(*) FROM jobs WHERE status = 'scheduled'
UNION ALL
SELECT status::text, count(*) FROM jobs WHERE status IN ('claimed', 'running') GROUP BY status
"""

RUNS_BY_STATUS = """
-- name: runs_by_status  (ix_runs_tenant_id_status_id, index-only)
-- One row per run, never per job: a run of 10,000 jobs counts once.
SELECT status::text AS status, count(*) AS n FROM runs GROUP BY status
"""


@dataclass(frozen=True, slots=True)
class StepTotal:
    from_status: str
    """Empty for a job's creation."""
    to_status: str
    n: int
    lease_expired: int


@dataclass(frozen=True, slots=True)
class Totals:
    steps: list[StepTotal]
    pruned: dict[str, int]

    def final_jobs(self) -> dict[JobStatus, int]:
        """Jobs resting in each final state: in, minus out, minus deleted by retention."""
        resting = {status: -self.pruned.get(status.value, 0) for status in FINAL_STATES}
        for step in self.steps:
            for status in FINAL_STATES:
                if step.to_status == status.value:
                    resting[status] += step.n
                if step.from_status == status.value:
                    resting[status] -= step.n
        return resting


class MetricsRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def fold(self, limit: int = FOLD_PAGE) -> int:
        """One page of the outbox into the totals; the events read (a full page: call again).

        Must run in a transaction of its own (``fold_page``): the cursor's lock is held to
        its end, and the totals must commit with the cursor.
        """
        cursor = run_statement(self._conn, LOCK_CURSOR, {})
        if cursor is None:
            raise StoreError(
                "the transition totals have no cursor row (schema older than migration 0009)",
                hint="Run `jobengine db upgrade`.",
            )
        row = run_statement(
            self._conn,
            FOLD,
            {
                "txid": cursor["txid"],
                "event_id": cursor["event_id"],
                "limit": limit,
                "lease_reasons": list(LEASE_EXPIRY_REASONS),
            },
        )
        return int(row["events"]) if row is not None else 0

    def totals(self) -> Totals:
        steps = [
            StepTotal(r["from_status"], r["to_status"], int(r["n"]), int(r["lease_expired"]))
            for r in run_all(self._conn, TOTALS, {})
        ]
        pruned = {r["status"]: int(r["n"]) for r in run_all(self._conn, PRUNED, {})}
        return Totals(steps, pruned)

    def runs(self) -> dict[RunStatus, int]:
        counted = {r["status"]: int(r["n"]) for r in run_all(self._conn, RUNS_BY_STATUS, {})}
        return {status: counted.get(status.value, 0) for status in RunStatus}

    def live_jobs(self) -> dict[JobStatus, int]:
        counted = {r["status"]: int(r["n"]) for r in run_all(self._conn, LIVE_JOBS, {})}
        return {
            status: counted.get(status.value, 0)
            for status in JobStatus
            if status not in FINAL_STATES
        }


def fold_page(engine: Engine, limit: int = FOLD_PAGE) -> int:
    """One fold in its own transaction; the events it counted."""
    with transaction(engine) as conn:
        return MetricsRepository(conn).fold(limit)


def fold_all(engine: Engine, *, limit: int = FOLD_PAGE, max_pages: int | None = None) -> int:
    """Fold page after page until the outbox's visible end (or ``max_pages``); events read."""
    total = pages = 0
    while max_pages is None or pages < max_pages:
        read = fold_page(engine, limit)
        total += read
        pages += 1
        if read < limit:
            break
    return total
