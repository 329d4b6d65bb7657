"""Engines and transactions, with driver errors turned into the engine's own.

Engines are made per process (``make_engine``) and never at import time, so a Celery pool
can fork first and connect after.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from jobengine.errors import StoreUnavailable


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use psycopg 3 for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(
    url: str, *, pool_size: int = 5, max_overflow: int = 10, pre_ping: bool = True
) -> Engine:
    return create_engine(
        normalize_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pre_ping,
        connect_args={"connect_timeout": 5},
    )


@contextmanager
def store_errors() -> Iterator[None]:
    """Report an unreachable database as ``StoreUnavailable`` (retryable), cause kept."""
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        raise StoreUnavailable(f"the job store is unreachable: {exc.orig}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable(f"the job store connection was lost: {exc.orig}") from exc
        raise


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One unit of work: committed on success, rolled back on any error."""
    with store_errors(), engine.begin() as conn:
        yield conn


def run_all(conn: Connection, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Run one statement on the driver cursor beneath ``conn``; its rows as dicts.

    The per-job statements run for every job; there SQLAlchemy's checkout and result machinery
    cost three times the client CPU of the statement itself (measured: 1.05 ms against 0.34 ms
    per claim). The statement still runs inside whatever transaction ``conn`` is in.
    """
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    try:
        with driver.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description is not None else []
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        conn.invalidate()
        raise StoreUnavailable(f"the job store is unreachable: {exc}") from exc


def run_statement(conn: Connection, sql: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """``run_all`` for a statement that returns at most one row that matters: the first."""
    rows = run_all(conn, sql, params)
    return rows[0] if rows else None


class SingleStatements:
    """One autocommit connection per thread, kept open, for units of work of one statement.

    A single statement is atomic on its own: skipping BEGIN and COMMIT saves two of the three
    round trips a per-job write would cost, and keeping the connection saves the pool checkout.
    A connection that failed is dropped and the next call opens a new one.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            with store_errors():
                conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._local.conn = conn
        try:
            with store_errors():
                yield conn
        except StoreUnavailable:
            self._local.conn = None
            conn.close()
            raise


_process_engines: dict[tuple[int, str], Engine] = {}


def process_engine(url: str, *, pool_size: int = 3) -> Engine:
    """This process's engine for ``url``, made on first use after any fork.

    A forked Celery pool child must never reuse its parent's connections, so engines are
    keyed by pid; a child's first call makes its own.
    """
    key = (os.getpid(), url)
    engine = _process_engines.get(key)
    if engine is None:
        engine = make_engine(url, pool_size=pool_size, max_overflow=2, pre_ping=False)
        _process_engines[key] = engine
    return engine
