"""Promotion: what the transaction that finalizes a run's job does to its children and run.

The guard calls ``settle`` with the rows its statement moved, in the same transaction. For
each job of a run that became final, every waiting child counts it off (one locking read for
all of them, ``COUNT_OFF_PARENTS``, and one write for those the move does not rewrite) and its
trigger rule decides at once: released (``pending → scheduled``), cancelled
(``upstream_failed``, ``upstream_cancelled``, ``upstream_succeeded``) or still waiting. For a
job brought back from a final state (a dead letter replayed), the children it had cancelled
come back to ``pending`` with their parents counted afresh. The run's counts of final jobs,
and so its status, move with both.

``settle`` writes no status itself: it returns the moves, which the guard performs (and
settles in turn, so a cancellation cascades one generation per round, set-based).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from jobengine.domain.run import TriggerRule
from jobengine.domain.status import FINAL_STATES, JobStatus
from jobengine.store import run_queries
from jobengine.store.database import run_all

UPSTREAM_FAILED = "upstream_failed"
UPSTREAM_CANCELLED = "upstream_cancelled"
UPSTREAM_SUCCEEDED = "upstream_succeeded"
REVIVED_BY_REPLAY = ("upstream_failed", "upstream_cancelled")
"""Reasons a replay undoes: the child was cancelled because of the job now running again."""


@dataclass(frozen=True, slots=True)
class Move:
    """Jobs the guard moves to ``to`` in one statement, for one parent's sake."""

    to: JobStatus
    reason: str
    parent_id: int
    job_ids: list[int] = field(default_factory=list)

    def details(self, parent_key: str | None) -> dict[str, Any]:
        return {"parent_id": self.parent_id, "parent_key": parent_key}


@dataclass(frozen=True, slots=True)
class Counted:
    """A waiting child after it counted off the parents that just finished."""

    id: int
    trigger_rule: TriggerRule
    waiting: int
    failed: int
    not_before: datetime | None
    any_failed: bool
    """Some parent that finished now failed (rather than being cancelled)."""
    last_parent: int
    failing_parent: int | None


def decide(child: Counted, now: datetime) -> tuple[JobStatus, str, int] | None:
    """(target, reason, the parent it is for), or None while the child keeps waiting.

    A released child whose ``not_before`` is still ahead stays ``pending`` with nothing to
    wait for but time: the leader's promoter moves it when it is due.
    """
    upstream = UPSTREAM_FAILED if child.any_failed else UPSTREAM_CANCELLED
    if child.trigger_rule is TriggerRule.ALL_SUCCESS and child.failed > 0:
        return JobStatus.CANCELLED, upstream, child.failing_parent or child.last_parent
    if child.waiting > 0:
        return None
    if child.trigger_rule is TriggerRule.ON_FAILURE and child.failed == 0:
        return JobStatus.CANCELLED, UPSTREAM_SUCCEEDED, child.last_parent
    if child.not_before is not None and child.not_before > now:
        return None
    return JobStatus.SCHEDULED, "released", child.last_parent


def settle(conn: Connection, rows: Iterable[Mapping[str, Any]]) -> list[Move]:
    """Count what the moved ``rows`` did to their runs and children; the moves that follow."""
    in_run = [r for r in rows if r.get("run_id") is not None]
    finished = [
        r
        for r in in_run
        if JobStatus(r["status"]) in FINAL_STATES
        and (r["from_status"] is None or JobStatus(r["from_status"]) not in FINAL_STATES)
    ]
    reopened = [
        r
        for r in in_run
        if r["from_status"] is not None
        and JobStatus(r["from_status"]) in FINAL_STATES
        and JobStatus(r["status"]) not in FINAL_STATES
    ]
    if not finished and not reopened:
        return []
    count_runs(conn, finished, reopened)
    keys = {r["id"]: r["run_key"] for r in in_run}
    moves = _children_of_finished(conn, finished) + _children_of_reopened(conn, reopened)
    return [_named(move, keys) for move in moves]


def count_runs(
    conn: Connection,
    finished: Sequence[Mapping[str, Any]],
    reopened: Sequence[Mapping[str, Any]],
    added: Mapping[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Move each run's counts of final jobs (and of all jobs, by ``added``); the runs after."""
    delta: dict[int, Counter[str]] = defaultdict(Counter)
    for r in finished:
        delta[r["run_id"]][str(r["status"])] += 1
    for r in reopened:
        delta[r["run_id"]][str(r["from_status"])] -= 1
    for run_id, n in (added or {}).items():
        delta[run_id]["added"] += n
    if not delta:
        return []
    run_ids = sorted(delta)
    return run_all(
        conn,
        run_queries.UPDATE_RUN_COUNTS,
        {
            "run_ids": run_ids,
            "completed": [delta[r]["completed"] for r in run_ids],
            "failed": [delta[r]["failed"] for r in run_ids],
            "cancelled": [delta[r]["cancelled"] for r in run_ids],
            "added": [delta[r]["added"] for r in run_ids],
        },
    )


def _children_of_finished(conn: Connection, finished: Sequence[Mapping[str, Any]]) -> list[Move]:
    if not finished:
        return []
    hits = run_all(
        conn,
        run_queries.CHILDREN_OF_FINISHED,
        {"ids": [r["id"] for r in finished], "outcomes": [str(r["status"]) for r in finished]},
    )
    if not hits:
        return []
    counted = run_all(
        conn,
        run_queries.COUNT_OFF_PARENTS,
        {
            "ids": [h["id"] for h in hits],
            "done": [h["done"] for h in hits],
            "failed": [h["failed"] for h in hits],
        },
    )
    by_child = {h["id"]: h for h in hits}
    now = datetime.now(UTC)
    moves: dict[tuple[JobStatus, str, int], Move] = {}
    staying: list[Mapping[str, Any]] = []
    for row in counted:
        hit = by_child[row["id"]]
        child = Counted(
            id=row["id"],
            trigger_rule=TriggerRule(row["trigger_rule"] or TriggerRule.ALL_SUCCESS),
            waiting=row["parents_waiting"],
            failed=row["parents_failed"],
            not_before=row["not_before"],
            any_failed=bool(hit["any_failed"]),
            last_parent=hit["last_parent"],
            failing_parent=hit["failing_parent"],
        )
        decision = decide(child, now)
        if decision is not None:
            moves.setdefault(decision, Move(*decision)).job_ids.append(child.id)
        if decision is None or decision[0] is not JobStatus.SCHEDULED or hit["failed"]:
            staying.append(row)
    _write_counts(conn, staying)
    return list(moves.values())


def _write_counts(conn: Connection, counted: Sequence[Mapping[str, Any]]) -> None:
    """Write the counts ``COUNT_OFF_PARENTS`` read, for the children whose row nothing else
    rewrites: a child released with every parent's success needs no write of its own, since
    its move to ``scheduled`` sets ``parents_waiting`` to 0 and its failures stay none."""
    if counted:
        run_all(
            conn,
            run_queries.SET_PARENT_COUNTS,
            {
                "ids": [c["id"] for c in counted],
                "waiting": [c["parents_waiting"] for c in counted],
                "failed": [c["parents_failed"] for c in counted],
            },
        )


def _children_of_reopened(conn: Connection, reopened: Sequence[Mapping[str, Any]]) -> list[Move]:
    """Children cancelled because of a job now running again, that nothing else still
    cancels (another parent failed for good), come back to ``pending``."""
    if not reopened:
        return []
    ids = [r["id"] for r in reopened]
    candidates = run_all(conn, run_queries.REVIVABLE_CHILDREN, {"ids": ids})
    revived = [
        c
        for c in candidates
        if TriggerRule(c["trigger_rule"] or TriggerRule.ALL_SUCCESS) is not TriggerRule.ALL_SUCCESS
        or c["failed"] == 0
    ]
    if not revived:
        return []
    _write_counts(
        conn,
        [
            {"id": c["id"], "parents_waiting": c["waiting"], "parents_failed": c["failed"]}
            for c in revived
        ],
    )
    return [
        Move(
            JobStatus.PENDING,
            "upstream job replayed",
            min(ids),
            [c["id"] for c in revived],
        )
    ]


def _named(move: Move, keys: Mapping[int, str | None]) -> Move:
    """The move's reason names its parent, as its history row will."""
    key = keys.get(move.parent_id)
    if move.to is JobStatus.SCHEDULED:
        reason = f"released by parent {move.parent_id} ({key})"
    elif move.to is JobStatus.PENDING:
        reason = f"upstream job {move.parent_id} ({key}) was replayed"
    else:
        reason = move.reason
    return Move(move.to, reason, move.parent_id, move.job_ids)
