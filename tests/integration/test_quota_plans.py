"""The statements of quotas, caps and fair shares read through their indexes: a fair fill
reads a few rows per tenant waiting, never a tenant's backlog, and none scans ``jobs``."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from jobengine.store import quotas_queries as q
from tests.integration.test_plans_use_indexes import _scanned_rows

BACKLOG = 20_000
TENANTS = 5


def explain(engine: Engine, sql: str, params: dict[str, Any]) -> dict[str, Any]:
    with engine.begin() as conn:
        driver = conn.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        [(explained,)] = driver.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params, prepare=False
        ).fetchall()
    plan: dict[str, Any] = explained[0]["Plan"]
    return plan


def node_types(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    found = [(plan["Node Type"], plan.get("Relation Name"))]
    for child in plan.get("Plans", []):
        found.extend(node_types(child))
    return found


@pytest.fixture
def filled(engine: Engine) -> Engine:
    """A fair-shared queue with one tenant's backlog of 20,000 and four tenants of one job
    each, statistics gathered on an empty table (as after a drain)."""
    with engine.begin() as conn:
        conn.execute(text("ANALYZE jobs"))
        conn.execute(text("INSERT INTO fair_queues (queue, max_in_flight) VALUES ('shared', 8)"))
        conn.execute(
            text(
                "INSERT INTO tenant_quotas (tenant_id, max_queued, max_running) VALUES"
                " ('big', 1000000, 4), ('t1', 10, 2)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO jobs (tenant_id, project_id, type, queue, payload, status,"
                " scheduled_at) SELECT 'big', 'p', 'noop', 'shared', '{}', 'scheduled', now()"
                " FROM generate_series(1, :n)"
            ),
            {"n": BACKLOG},
        )
        conn.execute(
            text(
                "INSERT INTO jobs (tenant_id, project_id, type, queue, payload, status,"
                " scheduled_at) SELECT 't' || g, 'p', 'noop', 'shared', '{}', 'scheduled', now()"
                " FROM generate_series(1, :n) AS g"
            ),
            {"n": TENANTS - 1},
        )
    return engine


def test_a_fair_fill_reads_a_few_rows_per_waiting_tenant_not_the_backlog(filled: Engine) -> None:
    plan = explain(filled, q.FAIR_FILL, {"queue": "shared", "free": 8, "flying_tenants": []})
    assert ("Seq Scan", "jobs") not in node_types(plan)
    read = sum(_scanned_rows(plan, "jobs"))
    assert read < 100, read  # five tenants, eight jobs at most each, plus the skip scan
    assert plan["Actual Rows"] == 8


def test_quota_cap_and_admission_statements_never_scan_jobs(filled: Engine) -> None:
    with filled.connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM jobs ORDER BY id LIMIT 3"))]
    for sql, params in (
        (q.LOCK_QUEUED_QUOTAS, {"tenants": ["big", "t1"]}),
        (q.QUEUED_OF_TENANTS, {"tenants": ["t1"]}),
        (q.LOCK_TENANT_CAPS, {"ids": ids}),
        (q.LEASED_OF_JOBS_TENANTS, {"ids": ids, "capped": ["big"]}),
        (q.TENANTS_OF_JOBS, {"ids": ids}),
        (q.STILL_IN_FLIGHT, {"ids": ids}),
        (q.CAP_ADMISSIONS, {"flying_tenants": ["big"]}),
        (q.CAPPED_IN_FLIGHT, {}),
        (q.ANY_CAP, {}),
    ):
        plan = explain(filled, sql, params)
        assert ("Seq Scan", "jobs") not in node_types(plan), sql
    claim_reads = sum(
        _scanned_rows(
            explain(filled, q.LEASED_OF_JOBS_TENANTS, {"ids": ids, "capped": ["big"]}), "jobs"
        )
    )
    assert claim_reads <= 3 * 2, claim_reads  # its jobs by key, and the tenant's leased: none
