"""Engines and transactions, with driver errors turned into the engine's own.

Engines are made per process (``make_engine``) and never at import time, so a Celery pool
can fork first and connect after.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def single_statement(engine: Engine) -> Iterator[Connection]:
    """A connection in autocommit mode, for a unit of work that is exactly one statement.

    One statement is atomic on its own; skipping BEGIN and COMMIT saves two of the three
    round trips a per-job write would otherwise cost. Use it only where one statement is
    the whole unit (the guard's transitions are).
    """
    with (
        store_errors(),
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
    ):
        yield conn


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
