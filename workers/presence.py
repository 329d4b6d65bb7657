"""This worker's row in the workers registry: announced when ready, kept fresh, removed at exit.

One thread of the worker's main process owns the row, over one connection of its own (no pool:
it writes every few seconds). Postgres being away never stops the worker: a beat that fails is
logged, the connection dropped, and the next beat reconnects and announces the row again if it
went missing; any other error of one beat is logged with its traceback and the thread beats
on, since a thread that died would show a working worker as gone. A warm shutdown marks the
row ``draining`` at once, while running tasks finish; the row is deleted when the worker
exits, so a row left behind means a worker that died without saying so, shown as gone after
``JOBENGINE_WORKER_TTL_SECONDS``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

import structlog
from celery import signals
from sqlalchemy import Connection, create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

import jobengine
from config.settings import Settings, get_settings
from jobengine.errors import StoreError
from jobengine.store.database import normalize_url, prepare_args
from jobengine.store.workers_repository import WorkerRecord, WorkersRepository
from workers.registry import HANDLERS
from workers.runtime import urls

log = structlog.get_logger("workers.presence")

PRUNE_EVERY_SECONDS = 60.0
LEAVE_TIMEOUT_SECONDS = 5.0


class Presence:
    """Keeps ``record``'s row: a heartbeat thread, a drain flag, a goodbye."""

    def __init__(self, database_url: str, record: WorkerRecord, settings: Settings) -> None:
        self.record = record
        self._engine = create_engine(
            normalize_url(database_url),
            poolclass=NullPool,
            connect_args={"connect_timeout": 3, **prepare_args()},
        )
        self._interval = settings.worker_heartbeat_seconds
        self._prune_after = settings.worker_prune_after_seconds
        self._conn: Connection | None = None
        self._announced = False
        self._draining = False
        self._next_prune = 0.0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="jobengine-presence", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def drain(self) -> None:
        """Mark the row draining at the next moment the thread runs; safe in a signal handler."""
        self._draining = True
        self._wake.set()

    def stop(self) -> None:
        """Stop beating and delete the row (best effort: a row left is gone after the TTL)."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(LEAVE_TIMEOUT_SECONDS)
        with self._lock:
            try:
                WorkersRepository(self._connection()).leave(self.record)
                log.info("worker_left", worker=self.record.name)
            except (SQLAlchemyError, StoreError, OSError) as exc:
                log.warning("worker_leave_failed", worker=self.record.name, error=str(exc))
            finally:
                self._drop()
                self._engine.dispose()

    def beat(self) -> None:
        """One heartbeat: refresh the row, announcing it when it is missing."""
        with self._lock:
            try:
                repo = WorkersRepository(self._connection())
                draining = self._draining
                if not (self._announced and repo.heartbeat(self.record, draining=draining)):
                    repo.announce(self.record, draining=draining)
                    if not self._announced:
                        log.info("worker_announced", worker=self.record.name)
                    self._announced = True
                if time.monotonic() >= self._next_prune:
                    pruned = repo.prune(self._prune_after)
                    self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
                    if pruned:
                        log.info("workers_pruned", count=pruned)
            except (SQLAlchemyError, StoreError, OSError) as exc:
                log.warning("worker_heartbeat_failed", worker=self.record.name, error=str(exc))
                self._drop()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.beat()
            except Exception:  # any: a thread that died would read as a dead worker
                log.exception("worker_heartbeat_crashed", worker=self.record.name)
                with self._lock:
                    self._drop()
            self._wake.wait(self._interval)
            self._wake.clear()

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except SQLAlchemyError:
                log.debug("worker_connection_close_failed", worker=self.record.name)
            self._conn = None


_presence: Presence | None = None


def record_of(consumer: Any, settings: Settings) -> WorkerRecord:
    """What this worker is: read from Celery's consumer once it is ready."""
    controller = consumer.controller
    return WorkerRecord(
        name=consumer.hostname,
        host=socket.gethostname(),
        pid=os.getpid(),
        queues=sorted(consumer.app.amqp.queues.consume_from),
        types=sorted(HANDLERS),
        concurrency=getattr(controller, "concurrency", None),
        sealed=settings.sealed,
        version=jobengine.__version__,
        started_at=datetime.now(UTC),
    )


def on_worker_ready(sender: Any = None, **_: Any) -> None:
    global _presence
    settings = get_settings()
    _presence = Presence(urls()[0], record_of(sender, settings), settings)
    _presence.start()


def on_worker_shutting_down(**_: Any) -> None:
    if _presence is not None:
        _presence.drain()


def on_worker_shutdown(**_: Any) -> None:
    if _presence is not None:
        _presence.stop()


signals.worker_ready.connect(on_worker_ready, weak=False)
signals.worker_shutting_down.connect(on_worker_shutting_down, weak=False)
signals.worker_shutdown.connect(on_worker_shutdown, weak=False)
