"""Engines and transactions, with driver errors turned into the engine's own.

Engines are made per process (``make_engine``) and never at import time, so a Celery pool
can fork first and connect after. Driver errors are sorted once here (``store_error_for``):
a lost or refused connection is ``StoreUnavailable``, a deadlock or serialization failure is
``StoreConflict``; both are transient, and ``retrying`` is the one way to run a store call
again after them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg.rows import dict_row
from sqlalchemy import Connection, Engine, NullPool, create_engine
from sqlalchemy.exc import DBAPIError, InterfaceError, PendingRollbackError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from jobengine.errors import (
    JobEngineError,
    StoreConflict,
    StoreOverloaded,
    StoreStatementCancelled,
    StoreUnavailable,
)
from jobengine.store.hosts import hosts_in_query
from jobengine.store.pooler import UNPREPARED, transaction_pooled

log = structlog.get_logger("jobengine.store")

T = TypeVar("T")

TRANSIENT: tuple[type[JobEngineError], ...] = (StoreUnavailable, StoreConflict)
"""What ``retrying`` runs again: the same call can succeed once the cause has passed."""

CONFLICT_STATES = frozenset({"40P01", "40001", "55P03"})
"""deadlock_detected, serialization_failure, lock_not_available."""
CANCELLED_STATE = "57014"
"""query_canceled: statement_timeout, or an operator's pg_cancel_backend."""
TOO_MANY_CONNECTIONS_STATE = "53300"
SLOTS_FULL_WORDS = ("too many clients", "connection slots are reserved")
"""How a refused connection says 53300: at connect time libpq gives the message, not always
the state."""
CONNECT_TIMEOUT_SECONDS = 5


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use psycopg 3 for them; accept libpq's list of
    several hosts (``u@h1:5432,h2:5432/db``) too, in the form SQLAlchemy reads (``hosts``)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
            break
    return hosts_in_query(url)


KEEPALIVE_ARGS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}
"""libpq's TCP keepalives and send timeout (ms): a server that vanished from the network is
noticed in seconds, not after the kernel's retransmissions (many minutes), so a statement on
a dead link fails like one on a closed connection and the retries above it stay bounded.
Unix sockets ignore them."""


NO_AUTOMATIC_PREPARE: dict[str, Any] = {"prepare_threshold": 2**31 - 1}
"""psycopg never prepares a statement on its own on the engine's connections (its default is
after five runs of any statement). Only the per-job statements are prepared, by ``run_all``,
whose plans are built to read just their own rows whatever the table's statistics; a
statement sent through SQLAlchemy is planned with its parameters every time. (A threshold of
None would also ignore ``run_all``'s explicit ``prepare=True``.)"""


def prepare_args() -> dict[str, Any]:
    """psycopg's preparing for this process's connections: none at all through a pooler in
    transaction mode (``store.pooler``), else only ``run_all``'s."""
    return UNPREPARED if transaction_pooled() else NO_AUTOMATIC_PREPARE


def _connect_args(application_name: str | None, *, keepalive: bool = False) -> dict[str, Any]:
    args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **prepare_args()}
    if keepalive:
        args.update(KEEPALIVE_ARGS)
    if application_name:
        args["application_name"] = application_name
    return args


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    pre_ping: bool = True,
    application_name: str | None = None,
    pool_timeout: float = 30.0,
) -> Engine:
    """A pooled engine; a checkout waiting past ``pool_timeout`` raises ``StoreOverloaded``
    (through ``store_errors``), so a caller with a deadline of its own can answer in time."""
    return create_engine(
        normalize_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=pre_ping,
        connect_args=_connect_args(application_name),
    )


def unpooled_engine(url: str, *, application_name: str) -> Engine:
    """An engine that keeps no idle connection: for a process whose one lasting connection is
    a ``SharedConnection``, so that every other connection it opens is closed after use and
    ``pg_stat_activity`` (by ``application_name``) shows exactly what it holds."""
    return create_engine(
        normalize_url(url),
        poolclass=NullPool,
        connect_args=_connect_args(application_name, keepalive=True),
    )


def store_error_for(exc: BaseException) -> JobEngineError | None:
    """The engine's error for a driver error (psycopg's, or SQLAlchemy's wrapping of one);
    None for anything that is not a database error.

    Only an unreachable server or a lost connection is ``StoreUnavailable``; a deadlock, a
    serialization failure or a lock timeout is ``StoreConflict`` (the server is fine, this
    statement lost); a cancelled statement is ``StoreStatementCancelled``. Any other
    ``OperationalError`` (refused connection: too many clients, database not accepting
    connections, shutting down, ...) means the server cannot serve us now: unavailable.
    """
    if isinstance(exc, PoolTimeout):
        # The pool's checkout timeout: every connection of this process is busy.
        return StoreOverloaded(f"no pooled connection to the job store came free in time: {exc}")
    if isinstance(exc, PendingRollbackError):
        # SQLAlchemy's report of a connection invalidated mid-transaction: not a DBAPIError,
        # and only a fresh connection cures it.
        return StoreUnavailable(f"the job store connection was lost: {exc}")
    orig: BaseException = exc.orig if isinstance(exc, DBAPIError) else exc  # type: ignore[assignment]
    if not isinstance(orig, psycopg.Error):
        if isinstance(exc, InterfaceError) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated
        ):
            return StoreUnavailable(f"the job store connection was lost: {orig}")
        return None
    state = orig.sqlstate
    if state in CONFLICT_STATES:
        return StoreConflict(f"the job store aborted a conflicting statement ({state}): {orig}")
    if state == CANCELLED_STATE:
        return StoreStatementCancelled(f"the job store cancelled the statement: {orig}")
    text = str(orig).lower()
    if state == TOO_MANY_CONNECTIONS_STATE or any(words in text for words in SLOTS_FULL_WORDS):
        return StoreOverloaded(f"the job store has no free connection slot: {orig}")
    if isinstance(orig, psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnavailable(f"the job store is unreachable: {orig}")
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return StoreUnavailable(f"the job store connection was lost: {orig}")
    return None


def is_disconnect(error: JobEngineError) -> bool:
    """Whether the connection that raised ``error`` is unusable and must be replaced."""
    return isinstance(error, StoreUnavailable)


@contextmanager
def store_errors() -> Iterator[None]:
    """Report driver errors as the engine's own (see ``store_error_for``), cause kept."""
    try:
        yield
    except (DBAPIError, PendingRollbackError, PoolTimeout, psycopg.Error) as exc:
        mapped = store_error_for(exc)
        if mapped is None:
            raise
        raise mapped from exc


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

    It is a server-side prepared statement (``prepare=True``), parsed once per connection
    (except through a pooler in transaction mode, see ``store.pooler``):
    unprepared, parsing and planning the guard's statement cost Postgres about as much as
    running it. Postgres may then keep a generic plan, made without the parameters and
    perhaps while ``jobs`` was nearly empty (a warm-up, a queue that drained); so every
    per-job statement is written to find its rows by primary key, with no condition a plan
    could serve by scanning a state's partial index, and the tests prove its plans read only
    their own rows once the table fills, on statistics of an empty table too
    (``tests/integration/test_plans_use_indexes.py``).
    """
    try:
        driver = conn.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        with driver.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params, prepare=True)
            return _rows(cur)
    except (psycopg.Error, DBAPIError, PendingRollbackError) as exc:
        mapped = store_error_for(exc)
        if mapped is None:
            raise
        if is_disconnect(mapped):
            conn.invalidate()
        raise mapped from exc


def _rows(cur: psycopg.Cursor[dict[str, Any]]) -> list[dict[str, Any]]:
    """The statement's rows, if it returns any. Asked through the result's status, not
    ``cursor.description``, whose column objects cost the worker more per job than reading
    the rows themselves (measured: 35 of them, about 0.1 ms, per claim)."""
    result = cur.pgresult
    if result is None or result.status != psycopg.pq.ExecStatus.TUPLES_OK:
        return []
    return cur.fetchall()


def run_statement(conn: Connection, sql: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """``run_all`` for a statement that returns at most one row that matters: the first."""
    rows = run_all(conn, sql, params)
    return rows[0] if rows else None


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "store_call_retried",
            what=what,
            attempt=state.attempt_number,
            error_code=getattr(error, "code", None),
            error=str(error),
        )

    return before_sleep


def retrying(
    fn: Callable[[], T],
    *,
    attempts: int = 5,
    deadline: float = 10.0,
    what: str = "store call",
) -> T:
    """Run ``fn``; run it again after a transient store error (``TRANSIENT``), with jittered
    exponential backoff (50 ms doubling, at most 1 s a wait), at most ``attempts`` times and
    not after ``deadline`` seconds from the first try. The last error is raised as it was.

    ``fn`` must open its own connection or transaction each time (a ``SharedConnection``
    replaces a lost one on its next use), and must be safe to run again: a write is, when it
    is fenced or a compare-and-set whose earlier success the caller can recognise.
    """
    retryer = Retrying(
        retry=retry_if_exception_type(TRANSIENT),
        stop=stop_after_attempt(max(attempts, 1)) | stop_after_delay(max(deadline, 0.0)),
        wait=wait_exponential(multiplier=0.05, max=1.0) + wait_random(0, 0.05),
        before_sleep=_log_retry(what),
        reraise=True,
    )
    return retryer(fn)


def retrying_transaction(
    engine: Engine,
    work: Callable[[Connection], T],
    *,
    attempts: int = 5,
    deadline: float = 10.0,
    what: str = "transaction",
) -> T:
    """``work`` in a transaction of its own, run again from the start after a transient error:
    for ``transaction()`` users whose work may be repeated whole."""

    def once() -> T:
        with transaction(engine) as conn:
            return work(conn)

    return retrying(once, attempts=attempts, deadline=deadline, what=what)


class SharedConnection:
    """The one connection of a process, in autocommit mode, lent to its threads in turn.

    A worker process claims, records outcomes, reads queue limits and beats its heartbeats
    through this one connection: the lock makes the task thread and the heartbeat thread
    alternate, so a process never needs a second slot. A single statement is atomic on its
    own, and skipping BEGIN and COMMIT saves two of the three round trips of a per-job write;
    ``transaction()`` opens a real one for work of several statements. A connection that was
    lost is dropped, and the next use opens a new one.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.RLock()
        self._conn: Connection | None = None
        self._pid = os.getpid()

    @contextmanager
    def use(self) -> Iterator[Connection]:
        with self._lock:
            conn = self._open()
            try:
                with store_errors():
                    yield conn
            except StoreUnavailable:
                self.drop()
                raise

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Several statements, committed together or not at all (BEGIN … COMMIT)."""
        with self.use() as conn:
            driver = conn.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            with driver.transaction():
                yield conn

    def drop(self) -> None:
        """Forget the current connection (closing it if it is this process's own)."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None or conn.closed or self._pid != os.getpid():
                return
            try:
                conn.invalidate()
                conn.close()
            except (DBAPIError, PendingRollbackError, psycopg.Error) as exc:
                log.debug("shared_connection_close_failed", error=str(exc))

    def _open(self) -> Connection:
        if self._pid != os.getpid():
            self._conn, self._pid = None, os.getpid()  # a fork: the parent's socket is not ours
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            with store_errors():
                conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._conn = conn
        return conn


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
