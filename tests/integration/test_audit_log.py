"""The audit log's store: an entry lives and dies with its act's transaction, retention alone
deletes old entries (and only with its setting), and each listing filter reads by an index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from config.settings import Settings
from jobengine.audit import Origin, record
from jobengine.audit.log import AuditFilter, list_entries
from jobengine.audit.queries import ENTRY_COLUMNS, LIST_ENTRIES, LIST_FILTERS
from jobengine.audit.retention import prune_audit
from jobengine.maintenance.leadership import Leadership
from jobengine.maintenance.retention import Retention, RetentionPolicy
from jobengine.store.database import transaction

OPS = Origin(actor="cli:ops@host", surface="cli")


class Boom(Exception):
    pass


def _count(engine: Engine, table: str = "audit_entries") -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_an_act_that_rolls_back_leaves_no_done_entry(engine: Engine) -> None:
    with pytest.raises(Boom), transaction(engine) as conn:
        record(conn, OPS, "quota.set", object_id="acme", tenant="acme", job_ids=[1, 2])
        raise Boom
    assert (_count(engine), _count(engine, "audit_entry_jobs")) == (0, 0)


def test_an_entry_drops_detail_fields_named_like_secrets(engine: Engine) -> None:
    with transaction(engine) as conn:
        record(
            conn, OPS, "key.create", object_id="abc", detail={"prefix": "abc", "secret": "s3cr3t"}
        )
    with engine.connect() as conn:
        detail = conn.execute(text("SELECT detail FROM audit_entries")).scalar_one()
    assert detail == {"prefix": "abc"}


def _backdated(engine: Engine, days_ago: float, n: int = 1) -> None:
    """Entries as if written ``days_ago`` days ago (an INSERT: the log only refuses changes)."""
    with transaction(engine) as conn:
        ids = conn.execute(
            text(
                "INSERT INTO audit_entries (at, actor, surface, action, object_kind, outcome) "
                "SELECT now() - make_interval(days => :d), 'cli:x@y', 'cli', 'job.cancel', "
                "'job', 'done' FROM generate_series(1, :n) RETURNING id"
            ),
            {"d": days_ago, "n": n},
        ).scalars()
        conn.execute(
            text("INSERT INTO audit_entry_jobs (entry_id, job_id) SELECT unnest(:ids), 1"),
            {"ids": list(ids)},
        )


def test_retention_deletes_only_entries_older_than_its_setting_with_their_jobs(
    engine: Engine,
) -> None:
    _backdated(engine, 400, n=7)
    _backdated(engine, 10)
    removed = prune_audit(engine, before=datetime.now(UTC) - timedelta(days=365), batch=3)
    assert removed == 7
    assert (_count(engine), _count(engine, "audit_entry_jobs")) == (1, 1)


def test_the_leader_prunes_the_audit_only_when_its_setting_is_set(engine: Engine) -> None:
    assert Settings().audit_retention_days is None  # kept forever unless the operator says
    _backdated(engine, 400)
    leadership = Leadership(engine, "audit-test-leader", 30)
    assert leadership.acquire()
    Retention(engine, leadership, RetentionPolicy()).run()
    assert _count(engine) == 1
    Retention(engine, leadership, RetentionPolicy(audit_after_days=365)).run()
    assert _count(engine) == 0


FILTERS: dict[str, object] = {
    "tenant": "t3",
    "actor": "api:k3 (p3)",
    "action": "dlq.replay",
    "object_kind": "job",
    "job_id": 77,
    "since": datetime.now(UTC) - timedelta(minutes=1),
}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_each_frequent_filter_reads_the_log_by_an_index(engine: Engine, name: str) -> None:
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO audit_entries (at, actor, surface, action, object_kind, object_id, "
                "tenant, outcome) SELECT now() - make_interval(days => i / 100), "
                "'api:k' || (i % 50) || ' (p' || (i % 50) || ')', 'rest', "
                "(ARRAY['job.cancel','dlq.replay','quota.set','limit.set'])[i % 4 + 1], "
                "(ARRAY['job','dead_letter','tenant','rate_limit'])[i % 4 + 1], i::text, "
                "'t' || (i % 40), 'done' FROM generate_series(1, 20000) AS i"
            )
        )
        conn.execute(
            text(
                "INSERT INTO audit_entry_jobs (entry_id, job_id) "
                "SELECT id, id % 5000 FROM audit_entries"
            )
        )
        conn.execute(text("ANALYZE audit_entries"))
        conn.execute(text("ANALYZE audit_entry_jobs"))
        where = LIST_FILTERS[name]
        sql = LIST_ENTRIES.format(columns=ENTRY_COLUMNS, where=where)
        plan = "\n".join(
            conn.exec_driver_sql("EXPLAIN " + sql, {name: FILTERS[name], "limit": 101}).scalars()
        )
        page = list_entries(conn, AuditFilter(**{name: FILTERS[name]}), limit=5)  # type: ignore[arg-type]
    assert "Seq Scan" not in plan, plan
    assert page.entries, "the filter matched nothing: the plan proves nothing"
