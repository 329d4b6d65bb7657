"""The statements the leader's scheduler runs every tick (and a tenant's listing) are served by
their indexes: with thousands of schedules, none reads the whole table (EXPLAIN, after ANALYZE)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, text

from jobengine.store import schedule_queries as q
from jobengine.store.database import transaction

NOW = datetime(2026, 5, 4, 12, tzinfo=UTC)
SCHEDULES = 5_000


def plan(engine: Engine, sql: str, params: dict[str, Any]) -> str:
    with transaction(engine) as conn:
        rows = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql, params).scalar_one()
    return json.dumps(rows)


@pytest.fixture
def many(engine: Engine) -> Engine:
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO schedules (tenant_id, project_id, name, cron, job_type, payload,"
                " paused, next_slot_at, buffered_slot_at)"
                " SELECT 't' || (n % 50), 'p', 's' || n, '* * * * *', 'noop', '{}', n % 3 = 0,"
                " :now + make_interval(mins => n), CASE WHEN n % 500 = 0 THEN :now END"
                " FROM generate_series(1, :n) AS n"
            ),
            {"now": NOW, "n": SCHEDULES},
        )
        conn.execute(text("ANALYZE schedules"))
    return engine


@pytest.mark.parametrize(
    ("name", "sql", "params", "index"),
    [
        ("due", q.DUE_SCHEDULES, {"now": NOW, "limit": 100}, "ix_schedules_due"),
        ("buffered", q.BUFFERED_SCHEDULES, {"limit": 100}, "ix_schedules_buffered"),
        ("next slot", q.NEXT_SLOT, {}, "ix_schedules_due"),
        ("lock", q.LOCK_SCHEDULE, {"id": 42}, "pk_schedules"),
        (
            "tenant list",
            q.LIST_TENANT_SCHEDULES,
            {"tenant_id": "t7", "after": 0, "limit": 100},
            "uq_schedules_tenant_id",
        ),
    ],
)
def test_a_tick_statement_reads_its_index_not_the_table(
    many: Engine, name: str, sql: str, params: dict[str, Any], index: str
) -> None:
    explained = plan(many, sql, params)
    assert index in explained, (name, explained)
    assert '"Seq Scan"' not in explained, (name, explained)


def test_the_last_slots_job_and_run_are_read_by_primary_key(engine: Engine) -> None:
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (tenant_id, project_id, type, payload, status)"
                " SELECT 't', 'p', 'noop', '{}', 'pending' FROM generate_series(1, 5000)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO runs (tenant_id, project_id, name, jobs_total)"
                " SELECT 't', 'p', 'r' || n, 1 FROM generate_series(1, 5000) AS n"
            )
        )
        conn.execute(text("ANALYZE jobs; ANALYZE runs"))
    explained = plan(engine, q.LAST_IS_FINAL, {"job_id": 42, "run_id": 42})
    assert "pk_jobs" in explained and "pk_runs" in explained, explained
    assert '"Seq Scan"' not in explained, explained
