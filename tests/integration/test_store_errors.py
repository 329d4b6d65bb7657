"""Real faults of a real Postgres, as the engine reports them: a deadlock is a conflict to
retry, a terminated backend is an outage that the next call recovers from."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Connection, Engine, text

from jobengine.errors import StoreConflict, StoreUnavailable
from jobengine.store.database import (
    SharedConnection,
    retrying_transaction,
    run_all,
    store_errors,
    transaction,
    unpooled_engine,
)


def _backend_pid(conn: Connection) -> int:
    return int(run_all(conn, "SELECT pg_backend_pid() AS pid", {})[0]["pid"])


def _terminate(engine: Engine, pid: int) -> None:
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()


@pytest.fixture
def two_rows(engine: Engine) -> Engine:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE deadlock_rows (id int PRIMARY KEY, n int DEFAULT 0)"))
        conn.execute(text("INSERT INTO deadlock_rows (id) VALUES (1), (2)"))
    return engine


def _crossing_updates(engine: Engine) -> list[Callable[[Connection], None]]:
    """Two units of work that lock rows 1 and 2 in opposite orders, meeting in the middle."""
    both_hold_one = threading.Barrier(2, timeout=30)

    def work(first: int, second: int) -> Callable[[Connection], None]:
        met: list[bool] = []

        def run(conn: Connection) -> None:
            update = text("UPDATE deadlock_rows SET n = n + 1 WHERE id = :id")
            conn.execute(update, {"id": first})
            if not met:  # only the first run meets the other; a retry runs straight through
                met.append(True)
                both_hold_one.wait()
            conn.execute(update, {"id": second})

        return run

    return [work(1, 2), work(2, 1)]


def test_a_real_deadlock_between_two_connections_is_a_conflict_not_an_outage(
    two_rows: Engine,
) -> None:
    def once(work: Callable[[Connection], None]) -> str:
        try:
            with transaction(two_rows) as conn:
                work(conn)
        except StoreConflict as exc:
            assert exc.retryable and "40P01" in str(exc)
            return "conflict"
        return "committed"

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(once, _crossing_updates(two_rows)))
    assert results == ["committed", "conflict"]


def test_a_deadlocked_transaction_that_opts_in_is_run_again_and_both_commit(
    two_rows: Engine,
) -> None:
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(retrying_transaction, two_rows, work, attempts=3, deadline=30)
            for work in _crossing_updates(two_rows)
        ]
        for future in futures:
            future.result()
    with two_rows.connect() as conn:
        counts: list[int] = list(
            conn.execute(text("SELECT n FROM deadlock_rows ORDER BY id")).scalars()
        )
    assert counts == [2, 2]


def test_a_terminated_backend_is_unavailable_and_the_next_use_reconnects(
    db_url: str, engine: Engine
) -> None:
    shared = SharedConnection(unpooled_engine(db_url, application_name="test-shared"))
    with shared.use() as conn:
        first = _backend_pid(conn)
    _terminate(engine, first)

    with pytest.raises(StoreUnavailable) as raised, shared.use() as conn:
        run_all(conn, "SELECT 1 AS one", {})
    assert raised.value.retryable

    with shared.use() as conn:
        second = _backend_pid(conn)
    assert second != first


def test_a_terminated_backend_mid_transaction_rolls_back_and_reports_unavailable(
    db_url: str, engine: Engine
) -> None:
    shared = SharedConnection(unpooled_engine(db_url, application_name="test-shared"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE half_written (n int)"))
    with pytest.raises(StoreUnavailable), shared.transaction() as conn:
        run_all(conn, "INSERT INTO half_written VALUES (1)", {})
        _terminate(engine, _backend_pid(conn))
        run_all(conn, "INSERT INTO half_written VALUES (2)", {})
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM half_written")).scalar() == 0
    with shared.transaction() as conn:
        run_all(conn, "INSERT INTO half_written VALUES (3)", {})
    with engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM half_written")).scalars().all() == [3]


def test_a_connection_lost_mid_transaction_never_escapes_as_a_raw_driver_error(
    db_url: str, engine: Engine
) -> None:
    victim = unpooled_engine(db_url, application_name="test-victim")
    with victim.connect() as conn:
        conn.begin()
        pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        _terminate(engine, pid)
        for _ in range(2):  # the first call loses the connection; the second finds it invalid
            with pytest.raises(StoreUnavailable), store_errors():
                conn.execute(text("SELECT 1"))
