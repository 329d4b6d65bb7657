"""A run's event stream reads its tenant's outbox a page at a time through an index, so a poll
costs the events committed since the last, never the tenant's whole history, and a quiet run
among busy ones moves on past the others' events."""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy import Engine, text

from jobengine.domain.run import RunJobSpec, RunSpec
from jobengine.runs import service
from jobengine.store import run_outbox
from jobengine.store.database import transaction
from jobengine.store.outbox import START
from jobengine.store.run_outbox import RunOutboxReader

OTHER_EVENTS = 20_000


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in plan_nodes(child))]


def test_a_poll_pages_through_other_jobs_events_by_index_and_finds_the_runs_own(
    db_url: str, engine: Engine
) -> None:
    spec = RunSpec("acme", "p", "pair", (RunJobSpec("a", "noop"), RunJobSpec("b", "noop")))
    with transaction(engine) as conn:
        run, jobs = service.submit_run(conn, spec, actor="test")
    with engine.begin() as conn:  # other jobs of the tenant, one event each
        conn.execute(
            text(
                "WITH other AS (INSERT INTO jobs (tenant_id, project_id, type, queue, payload,"
                " status) SELECT 'acme', 'p', 'noop', 'default', '{}', 'pending'"
                " FROM generate_series(1, :n) RETURNING id) "
                "INSERT INTO job_events (job_id, tenant_id, type, version, data) "
                "SELECT id, 'acme', 'job.progress', 1,"
                " jsonb_build_object('job_id', id, 'attempt', 0, 'progress', '{}'::jsonb)"
                " FROM other ORDER BY id"
            ),
            {"n": OTHER_EVENTS},
        )
        conn.execute(text("ANALYZE job_events"))
        conn.execute(text("ANALYZE jobs"))
    with transaction(engine) as conn:
        reader = RunOutboxReader(conn)
        first = reader.first(run.id)
        own = reader.page(run.id, "acme", first, 500)
        assert sorted(e.job_id for e in own.events) == sorted(2 * [job.id for job in jobs])
        scanned, pages = own.scanned_to, 0
        while True:
            page = reader.page(run.id, "acme", scanned, 500)
            assert page.events == []  # none of the others' events is the run's
            pages += 1
            if not page.full:
                break
            scanned = page.scanned_to
        # The first page read 500 events, the run's four among them; the rest, 500 a page.
        assert pages == (len(own.events) + OTHER_EVENTS - 500) // 500 + 1
        assert reader.settled(run.id, own.events[-1].position)
        assert not reader.settled(run.id, first)
        assert reader.page(run.id, "globex", START, 500).events == []

    after = own.events[-1].position
    params = {
        "run_id": run.id,
        "tenant_id": "acme",
        "after_txid": after.txid,
        "after_id": after.event_id,
        "limit": 500,
    }
    with psycopg.connect(db_url.replace("postgresql+psycopg", "postgresql")) as raw:
        for sql, args in (
            (run_outbox.SCAN, params),
            (run_outbox.SETTLED, params),
            (run_outbox.FIRST, {"run_id": run.id}),
        ):
            [[plan]] = raw.execute(f"EXPLAIN (FORMAT JSON) {sql}", args).fetchall()
            scans = {
                (n.get("Relation Name"), n["Node Type"])
                for n in plan_nodes(plan[0]["Plan"])
                if n.get("Relation Name") in ("job_events", "jobs")
            }
            assert all(kind != "Seq Scan" for _, kind in scans), (sql, scans)
