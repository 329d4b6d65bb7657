"""Retention: deleting what is older than a cut-off, in short batches, without losing a count.

Three steps, each a statement run batch after batch, each batch its own transaction, walking
an index in key order so no batch reads or locks for long:

1. dead letters already dealt with (replayed or discarded) before the cut-off; open ones stay;
2. outbox events, in commit order ``(txid, id)``, up to the first one younger than the cut-off
   and never past the totals' cursor: an event no fold has counted is never deleted (a
   straggler behind the first young one goes at the next run);
3. final jobs (completed, cancelled, and failed ones whose dead letter is not open) that
   finished before the cut-off, none of whose events is unfolded, with their history,
   events, dead letter and the run's edges that name them. Each deleted job is recorded in
   ``pruned_jobs`` under the state it rested in, so that state's gauge stays right
   (``store.metrics_repository``). A non-final job is never touched: the batch locks its
   jobs and deletes only rows still final.

The artifacts of the jobs a batch deletes go in the same statement; their bytes are deleted
from the artifacts storage only **after that batch's transaction has committed**, one key at a
time and idempotently. A crash or a storage error in between leaves at worst an orphan blob
(logged, ``artifact_bytes_not_deleted``), never a row that points at bytes already gone.

The transition totals are untouched: counters survive retention. A dry run runs the same
statements with their deletes switched off and moves past each batch by key instead, so it
reports what a real run would remove, table by table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, Engine

from jobengine.artifacts.storage import ArtifactStorage
from jobengine.store.database import run_statement, transaction
from jobengine.store.metrics_repository import fold_all

log = structlog.get_logger("jobengine.retention")

TABLES = ("jobs", "job_history", "job_events", "dead_letters")
"""What a prune reports, in this order (``dead_letter_replays`` go with their dead letters)."""

START = "-infinity"
"""The key before every timestamp: where a walk by time starts."""

PRUNE_DEAD_LETTERS = """
-- name: prune_dead_letters  (ix_dead_letters_status_changed_at)
WITH doomed AS (
    SELECT id, status_changed_at FROM dead_letters
    WHERE status IN ('replayed', 'discarded') AND status_changed_at < %(before)s
      AND (status_changed_at, id) > (%(after_at)s::timestamptz, %(after_id)s)
    ORDER BY status_changed_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
gone AS (
    DELETE FROM dead_letters AS d USING doomed
    WHERE NOT %(dry_run)s AND d.id = doomed.id AND d.status IN ('replayed', 'discarded')
    RETURNING d.id
)
SELECT (SELECT count(*) FROM doomed) AS found,
       CASE WHEN %(dry_run)s THEN (SELECT count(*) FROM doomed)
            ELSE (SELECT count(*) FROM gone) END AS dead_letters,
       last.status_changed_at AS after_at, last.id AS after_id
FROM (SELECT 1) AS one
LEFT JOIN (SELECT status_changed_at, id FROM doomed
           ORDER BY status_changed_at DESC, id DESC LIMIT 1) AS last ON true
"""

PRUNE_EVENTS = """
-- name: prune_events  (ix_job_events_txid_id, pk_job_events)
-- A page in commit order after the walk's position and not past the totals' cursor; the old
-- events of it go. A page holding a young event is where the cut-off lies: the walk ends.
WITH page AS (
    SELECT txid, id, occurred_at FROM job_events
    WHERE (txid, id) > (%(after_txid)s::text::xid8, %(after_id)s)
      AND (txid, id) <= (%(cursor_txid)s::text::xid8, %(cursor_id)s)
    ORDER BY txid, id
    LIMIT %(limit)s
),
doomed AS (SELECT id FROM page WHERE occurred_at < %(before)s),
gone AS (
    DELETE FROM job_events AS e USING doomed
    WHERE NOT %(dry_run)s AND e.id = doomed.id
    RETURNING e.id
)
SELECT (SELECT count(*) FROM page) AS found,
       CASE WHEN %(dry_run)s THEN (SELECT count(*) FROM doomed)
            ELSE (SELECT count(*) FROM gone) END AS job_events,
       coalesce((SELECT bool_or(occurred_at >= %(before)s) FROM page), false) AS reached_cut_off,
       last.txid::text AS after_txid, last.id AS after_id
FROM (SELECT 1) AS one
LEFT JOIN (SELECT txid, id FROM page ORDER BY txid DESC, id DESC LIMIT 1) AS last ON true
"""

_WALKED = """(e.txid, e.id) <= (%(walked_txid)s::text::xid8, %(walked_id)s)
                     AND e.occurred_at < %(before)s"""
_DEALT_WITH = """d.status IN ('replayed', 'discarded')
                     AND d.status_changed_at < %(before)s"""

PRUNE_JOBS = f"""
-- name: prune_jobs  (ix_jobs_final_completed_at; ix_job_history_job_id_id,
--                    ix_job_events_job_id_id, uq_dead_letters_job_id, uq_artifacts_job_id,
--                    pk_job_edges and ix_job_edges_child_id per job)
-- Final jobs oldest first, locked (a job another transaction holds is left for next time),
-- with their rows in the other tables. A dry run counts instead, leaving out the events and
-- dead letters the earlier steps counted (a real run has deleted those already).
WITH doomed AS (
    SELECT j.id, j.status::text AS status, j.completed_at FROM jobs AS j
    WHERE j.status IN ('completed', 'failed', 'cancelled') AND j.completed_at < %(before)s
      AND (j.completed_at, j.id) > (%(after_at)s::timestamptz, %(after_id)s)
      AND NOT EXISTS (SELECT 1 FROM dead_letters AS d
                      WHERE d.job_id = j.id AND d.status = 'open')
      AND NOT EXISTS (SELECT 1 FROM job_events AS e
                      WHERE e.job_id = j.id
                        AND (e.txid, e.id) > (%(cursor_txid)s::text::xid8, %(cursor_id)s))
    ORDER BY j.completed_at, j.id
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
),
events_gone AS (
    DELETE FROM job_events AS e USING doomed
    WHERE NOT %(dry_run)s AND e.job_id = doomed.id
    RETURNING e.id
),
history_gone AS (
    DELETE FROM job_history AS h USING doomed
    WHERE NOT %(dry_run)s AND h.job_id = doomed.id
    RETURNING h.id
),
letters_gone AS (
    DELETE FROM dead_letters AS d USING doomed
    WHERE NOT %(dry_run)s AND d.job_id = doomed.id
    RETURNING d.id
),
edges_down_gone AS (
    DELETE FROM job_edges AS g USING doomed
    WHERE NOT %(dry_run)s AND g.parent_id = doomed.id
),
edges_up_gone AS (
    DELETE FROM job_edges AS g USING doomed
    WHERE NOT %(dry_run)s AND g.child_id = doomed.id
),
artifacts_gone AS (
    DELETE FROM artifacts AS a USING doomed
    WHERE NOT %(dry_run)s AND a.job_id = doomed.id
    RETURNING a.storage_key
),
jobs_gone AS (
    DELETE FROM jobs AS j USING doomed
    WHERE NOT %(dry_run)s AND j.id = doomed.id
      AND j.status IN ('completed', 'failed', 'cancelled')
    RETURNING j.status::text AS status
),
recorded AS (
    INSERT INTO pruned_jobs AS p (status, n)
    SELECT status, count(*) FROM jobs_gone GROUP BY status
    ON CONFLICT (status) DO UPDATE SET n = p.n + EXCLUDED.n, pruned_at = now()
    RETURNING 1
)
SELECT (SELECT count(*) FROM doomed) AS found,
       CASE WHEN %(dry_run)s THEN (SELECT count(*) FROM doomed)
            ELSE (SELECT count(*) FROM jobs_gone) END AS jobs,
       CASE WHEN %(dry_run)s
            THEN (SELECT count(*) FROM job_history AS h JOIN doomed ON h.job_id = doomed.id)
            ELSE (SELECT count(*) FROM history_gone) END AS job_history,
       CASE WHEN %(dry_run)s
            THEN (SELECT count(*) FROM job_events AS e JOIN doomed ON e.job_id = doomed.id
                  WHERE NOT ({_WALKED}))
            ELSE (SELECT count(*) FROM events_gone) END AS job_events,
       CASE WHEN %(dry_run)s
            THEN (SELECT count(*) FROM dead_letters AS d JOIN doomed ON d.job_id = doomed.id
                  WHERE NOT ({_DEALT_WITH}))
            ELSE (SELECT count(*) FROM letters_gone) END AS dead_letters,
       CASE WHEN %(dry_run)s
            THEN ARRAY(SELECT a.storage_key FROM artifacts AS a JOIN doomed ON a.job_id = doomed.id)
            ELSE ARRAY(SELECT storage_key FROM artifacts_gone) END AS artifact_keys,
       last.completed_at AS after_at, last.id AS after_id
FROM (SELECT 1) AS one
LEFT JOIN (SELECT completed_at, id FROM doomed
           ORDER BY completed_at DESC, id DESC LIMIT 1) AS last ON true
"""

CURSOR = """
-- name: totals_cursor  (pk_transition_totals_cursor)
SELECT txid::text AS txid, event_id FROM transition_totals_cursor WHERE id = 1
"""


@dataclass
class PruneReport:
    before: datetime
    dry_run: bool
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    """Rows deleted per table (in a dry run: that a real run would delete)."""
    batches: int = 0
    artifacts: int = 0
    """Artifacts of the deleted jobs (in a dry run: that would go); their bytes are deleted
    after each batch commits."""


Batch = Callable[[Connection], None]
"""Called at the start of each batch's transaction, e.g. the leader's fence."""


def _no_check(conn: Connection) -> None:
    return None


def prune(
    engine: Engine,
    *,
    before: datetime,
    batch: int,
    dry_run: bool = False,
    each_batch: Batch = _no_check,
    artifacts: ArtifactStorage | None = None,
) -> PruneReport:
    """Delete (or, in a dry run, count) what retention removes before ``before``, and the
    bytes of the deleted jobs' artifacts from ``artifacts`` (left, and logged, without one).

    Folds the outbox first, so every event old enough to go is counted before it can go.
    """
    if batch < 1:
        raise ValueError("a prune batch holds at least one row")
    fold_all(engine)
    report = PruneReport(before=before, dry_run=dry_run)
    base: dict[str, Any] = {"before": before, "limit": batch, "dry_run": dry_run}
    with transaction(engine) as conn:
        cursor = run_statement(conn, CURSOR, {})
    assert cursor is not None, "migration 0009 inserts the cursor row"
    position = {"cursor_txid": cursor["txid"], "cursor_id": cursor["event_id"]}

    after: dict[str, Any] = {"after_at": START, "after_id": 0}
    while True:
        row = _batch(engine, PRUNE_DEAD_LETTERS, {**base, **after}, report, each_batch)
        if row["found"] < batch:
            break
        after = {"after_at": row["after_at"], "after_id": row["after_id"]}

    after = {"after_txid": "0", "after_id": 0}
    while True:
        row = _batch(engine, PRUNE_EVENTS, {**base, **position, **after}, report, each_batch)
        if row["found"] > 0:
            after = {"after_txid": row["after_txid"], "after_id": row["after_id"]}
        if row["found"] < batch or row["reached_cut_off"]:
            break
    walked = {"walked_txid": after["after_txid"], "walked_id": after["after_id"]}

    after = {"after_at": START, "after_id": 0}
    while True:
        params = {**base, **position, **walked, **after}
        row = _batch(engine, PRUNE_JOBS, params, report, each_batch)
        keys = list(row["artifact_keys"])
        report.artifacts += len(keys)
        if not dry_run:
            _delete_bytes(artifacts, keys)
        if row["found"] < batch:
            break
        after = {"after_at": row["after_at"], "after_id": row["after_id"]}
    return report


def _batch(
    engine: Engine, sql: str, params: dict[str, Any], report: PruneReport, each_batch: Batch
) -> dict[str, Any]:
    with transaction(engine) as conn:
        each_batch(conn)
        row = run_statement(conn, sql, params)
    assert row is not None, "each prune statement returns one row"
    for table in TABLES:
        report.removed[table] += int(row.get(table) or 0)
    report.batches += 1
    return row


def _delete_bytes(storage: ArtifactStorage | None, keys: list[str]) -> None:
    """The bytes of artifacts whose rows have just been committed away, key by key: one that
    cannot be deleted stays an orphan blob, logged, and the others still go."""
    if not keys:
        return
    if storage is None:
        log.warning("artifact_bytes_left", keys=len(keys), reason="no artifacts storage given")
        return
    for key in keys:
        try:
            storage.delete(key)
        except Exception as exc:
            log.warning("artifact_bytes_not_deleted", storage_key=key, error=str(exc))
