"""What a transaction pooler cannot carry between transactions, shown on a real PgBouncer: a
prepared statement made on one server connection, and a startup parameter it does not track;
and that ``JOBENGINE_DB_POOLER=transaction`` turns both off, the reaper's bounds coming from
its own pool instead."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from jobengine.store.database import make_engine, run_all
from jobengine.store.role_connections import check_reaper_bounds, reaper_bounds, reaper_engine
from tests.chaos.harness import LEADER_TTL_S
from tests.pgbouncer.bouncer import REAPER_DB, UNBOUNDED_DB, PgBouncer

STATEMENT = "SELECT %(n)s::int AS n"


def run_twice_around_another_transaction(engine: Engine) -> list[dict[str, int]]:
    """``run_all`` on one client connection, then again while another client's transaction
    holds the server connection the first one ran on, so the second run gets another."""
    with engine.connect() as first, engine.connect() as other:
        first = first.execution_options(isolation_level="AUTOCOMMIT")
        rows = run_all(first, STATEMENT, {"n": 1})
        with other.begin():
            other.exec_driver_sql("SELECT 1")
            rows += run_all(first, STATEMENT, {"n": 2})
    return rows


def test_a_statement_prepared_through_pgbouncer_is_missing_on_the_next_server_connection(
    bouncer: PgBouncer,
) -> None:
    engine = make_engine(bouncer.url(), pool_size=2)
    try:
        with pytest.raises(psycopg.errors.InvalidSqlStatementName, match="_pg3_0"):
            run_twice_around_another_transaction(engine)
    finally:
        engine.dispose()


@pytest.mark.usefixtures("pooled")
def test_with_the_pooler_setting_the_same_statements_run_on_any_server_connection(
    bouncer: PgBouncer,
) -> None:
    engine = make_engine(bouncer.url(), pool_size=2)
    try:
        assert run_twice_around_another_transaction(engine) == [{"n": 1}, {"n": 2}]
        servers = sum(int(p["sv_idle"]) + int(p["sv_used"]) for p in bouncer.admin("SHOW POOLS"))
        assert servers >= 2  # the second run did reach another server connection
    finally:
        engine.dispose()


def test_pgbouncer_refuses_the_reaper_s_bounds_sent_as_a_startup_parameter(
    bouncer: PgBouncer,
) -> None:
    engine = reaper_engine(bouncer.url(REAPER_DB), LEADER_TTL_S)
    try:
        with pytest.raises(OperationalError, match="unsupported startup parameter: options"):
            engine.connect().close()
    finally:
        engine.dispose()


@pytest.mark.usefixtures("pooled")
def test_through_the_pooler_the_reaper_gets_its_bounds_from_its_own_pool_or_says_they_lack(
    bouncer: PgBouncer, capsys: pytest.CaptureFixture[str]
) -> None:
    own = reaper_engine(bouncer.url(REAPER_DB), LEADER_TTL_S)
    other = reaper_engine(bouncer.url(UNBOUNDED_DB), LEADER_TTL_S)
    try:
        assert check_reaper_bounds(own, LEADER_TTL_S) == []
        assert check_reaper_bounds(other, LEADER_TTL_S) == list(reaper_bounds(LEADER_TTL_S))
    finally:
        own.dispose()
        other.dispose()
    captured = capsys.readouterr()
    said = captured.out + captured.err
    assert said.count("reaper_bounds_missing") == 1 and "connect_query" in said
