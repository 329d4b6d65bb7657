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

from dataclasses import dataclass, replace

from sqlalchemy import Connection, Engine

from jobengine.domain.status import FINAL_STATES, JobStatus, RunStatus
from jobengine.errors import StoreError
from jobengine.store.database import run_all, run_statement, transaction

LEASE_EXPIRY_REASONS = ("lease_expired", "lease_expired_before_start")
"""Reasons the reaper records when it takes a lease back (``jobengine.reaper``)."""

DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0, 3600.0, 7200.0, 21600.0,
)  # fmt: skip
"""Upper bounds (seconds) of the wait and run time histograms' buckets: 5 ms to 6 h, +Inf
beyond. Stored per bound, so changing them starts new rows and leaves the old ones unread."""

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
-- Wait and run times into their histograms' buckets (pk_duration_totals): the smallest
-- bound at or above the value, +Inf above them all. A bucket's index counts the bounds below
-- the value: width_bucket over the negated bounds, reversed, counts those at or above it.
timed AS (
    SELECT CASE WHEN data ? 'waited_seconds' THEN 'wait' ELSE 'run' END AS kind,
           data->>'queue' AS queue,
           CASE WHEN data ? 'ran_seconds' THEN data->>'to_status' ELSE '' END AS outcome,
           greatest(coalesce((data->>'waited_seconds')::float8,
                             (data->>'ran_seconds')::float8), 0) AS seconds
    FROM batch
    WHERE type = 'job.transition' AND (data ? 'waited_seconds' OR data ? 'ran_seconds')
      AND coalesce(data->>'waited_seconds', data->>'ran_seconds') IS NOT NULL
),
bucketed AS (
    SELECT kind, queue, outcome,
           coalesce((%(bounds)s::float8[])[cardinality(%(bounds)s::float8[]) + 1
                    - width_bucket(-seconds, %(negated_bounds)s::float8[])],
                    'Infinity'::float8) AS le,
           count(*) AS n, sum(seconds) AS seconds
    FROM timed
    GROUP BY 1, 2, 3, 4
),
durations AS (
    INSERT INTO duration_totals AS d (kind, queue, outcome, le, n, seconds)
    SELECT kind, queue, outcome, le, n, seconds FROM bucketed
    ON CONFLICT (kind, queue, outcome, le) DO UPDATE
    SET n = d.n + EXCLUDED.n, seconds = d.seconds + EXCLUDED.seconds
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

DURATIONS = """
-- name: duration_totals  (a few rows per queue: one per bucket reached)
SELECT kind, queue, outcome, le, n, seconds FROM duration_totals
ORDER BY kind, queue, outcome, le
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
class DurationHistogram:
    """One histogram's buckets as stored: not cumulative, only the bounds reached."""

    kind: str
    """``wait`` (due → started) or ``run`` (started → ended)."""
    queue: str
    outcome: str
    """How a run ended (completed, failed, cancelled); empty for a wait."""
    counts: dict[float, int]
    seconds: float

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus's buckets: every bound, counting what is at or below it, then +Inf."""
        running, out = 0, []
        for bound in DURATION_BUCKETS:
            running += self.counts.get(bound, 0)
            out.append((repr(bound), running))
        out.append(("+Inf", sum(self.counts.values())))
        return out


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
                "bounds": list(DURATION_BUCKETS),
                "negated_bounds": [-b for b in reversed(DURATION_BUCKETS)],
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

    def durations(self) -> list[DurationHistogram]:
        found: dict[tuple[str, str, str], DurationHistogram] = {}
        for r in run_all(self._conn, DURATIONS, {}):
            key = (r["kind"], r["queue"], r["outcome"])
            histogram = found.get(key)
            if histogram is None:
                histogram = found[key] = DurationHistogram(*key, counts={}, seconds=0.0)
            histogram.counts[float(r["le"])] = int(r["n"])
            found[key] = replace(histogram, seconds=histogram.seconds + float(r["seconds"]))
        return list(found.values())

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
