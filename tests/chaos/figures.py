"""The figures of one scenario, read from Postgres and from the effect ledger.

- ``lost``: jobs not in a final state by the deadline;
- ``double_finalized``: jobs with more than one history row into a final state (completed,
  cancelled, or failed not followed by a retry or replay);
- ``completed_without_effect``: completed jobs with no line in the ledger;
- ``effects_per_job``: ledger lines per submitted job (0 counts);
- ``time_to_recover_s``: from the fault's end until every job is final (null if never).

The evidence beside them says where a failing scenario's jobs are stuck.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

FINAL_STATES = ("completed", "failed", "cancelled")
FINAL_SQL = f"status IN {FINAL_STATES}"

DOUBLE_FINALIZED_SQL = """
WITH h AS (
    SELECT job_id, to_status,
           lead(from_status) OVER (PARTITION BY job_id ORDER BY id) AS next_from
    FROM job_history
)
SELECT count(*) FROM (
    SELECT job_id FROM h
    WHERE to_status IN ('completed', 'cancelled')
       OR (to_status = 'failed' AND next_from IS DISTINCT FROM 'failed')
    GROUP BY job_id HAVING count(*) > 1
) twice
"""

EVIDENCE_SQL = {
    "lease_rescues": "SELECT count(*) FROM job_history WHERE reason LIKE 'lease_expired%'",
    "scheduled_marked_dispatched": (
        "SELECT count(*) FROM jobs WHERE status = 'scheduled' AND dispatched_at IS NOT NULL"
    ),
    "leases_kept_fresh": (
        "SELECT count(*) FROM jobs WHERE status IN ('claimed', 'running') "
        "AND lease_expires_at > now()"
    ),
}
"""Lease rescues: the fault met jobs in flight and a leader took them back. Scheduled jobs
marked dispatched: their message counts as sent, so they wait for a claim or the lost-dispatch
sweep. Claimed or running jobs with a live lease: someone still renews a lease."""


def rows(conn: Connection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.execute(text(sql))]


def _count(conn: Connection, sql: str) -> int:
    return int(conn.execute(text(sql)).scalar_one())


def open_jobs(engine: Engine) -> int:
    with engine.connect() as conn:
        return _count(conn, f"SELECT count(*) FROM jobs WHERE NOT {FINAL_SQL}")


STUCK_SQL = f"""
SELECT j.id, j.status::text AS status, j.attempt, j.run_key, j.parents_waiting,
       j.lease_owner, j.lease_expires_at > now() AS lease_live, j.dispatched_at, j.not_before,
       (SELECT concat(h.from_status, '->', h.to_status, ' ', h.reason)
        FROM job_history h WHERE h.job_id = j.id ORDER BY h.id DESC LIMIT 1) AS last_transition
FROM jobs j WHERE NOT {FINAL_SQL} ORDER BY j.id LIMIT 20
"""


def stuck_jobs(engine: Engine) -> list[dict[str, Any]]:
    """The first open jobs, with what says why each is open: for a failure's message."""
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(text(STUCK_SQL))]


def wait_all_final(engine: Engine, timeout: float) -> None:
    """Until every job is final; past ``timeout``, fail naming the jobs still open."""
    deadline = time.monotonic() + timeout
    while open_jobs(engine):
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs open after {timeout}s: {stuck_jobs(engine)}")
        time.sleep(0.05)


def final_jobs(engine: Engine) -> int:
    with engine.connect() as conn:
        return _count(conn, f"SELECT count(*) FROM jobs WHERE {FINAL_SQL}")


def ledger_counts(ledger: Path) -> Counter[int]:
    """Effects per job id, from the ledger's ``job_id attempt pid`` lines."""
    counts: Counter[int] = Counter()
    if ledger.exists():
        for line in ledger.read_text().splitlines():
            counts[int(line.split()[0])] += 1
    return counts


@dataclass
class Outcome:
    figures: dict[str, Any]
    evidence: dict[str, Any]
    bound_s: float
    """The recovery bound this scenario is held to (see ``harness.run_scenario``)."""


def measure(
    engine: Engine, ledger: Path, scenario: str, ids: list[int], recovered: float | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The figures and the evidence, for jobs ``ids`` (the only jobs in the database)."""
    effects = ledger_counts(ledger)
    per_job = [effects.get(job_id, 0) for job_id in ids]
    with engine.connect() as conn:
        statuses = {
            str(status): int(n)
            for status, n in rows(conn, "SELECT status::text, count(*) FROM jobs GROUP BY 1")
        }
        completed = [
            int(i) for (i,) in rows(conn, "SELECT id FROM jobs WHERE status = 'completed'")
        ]
        double = _count(conn, DOUBLE_FINALIZED_SQL)
        evidence: dict[str, Any] = {name: _count(conn, sql) for name, sql in EVIDENCE_SQL.items()}
    figures = {
        "scenario": scenario,
        "submitted": len(ids),
        "lost": sum(n for status, n in statuses.items() if status not in FINAL_STATES),
        "double_finalized": double,
        "completed_without_effect": sum(1 for job_id in completed if effects[job_id] == 0),
        "effects_per_job": {
            "min": min(per_job),
            "max": max(per_job),
            "mean": round(sum(per_job) / len(per_job), 3),
        },
        "time_to_recover_s": None if recovered is None else round(recovered, 2),
    }
    return figures, {"by_status": statuses, **evidence}


def assert_nothing_lost(outcome: Outcome, *, recovery_bounded: bool = True) -> None:
    """0 lost, 0 double-finalized, every completed job's effect ran; and, where the fault
    ends before the jobs are final (``recovery_bounded``), recovery within the bound."""
    figures = outcome.figures
    assert figures["lost"] == 0, f"jobs not final by the deadline: {outcome.evidence}"
    assert figures["double_finalized"] == 0, figures
    assert figures["completed_without_effect"] == 0, figures
    took = figures["time_to_recover_s"]
    assert took is not None, f"jobs not final by the deadline: {outcome.evidence}"
    if recovery_bounded:
        assert took <= outcome.bound_s, f"recovered in {took}s, bound {outcome.bound_s:.1f}s"
