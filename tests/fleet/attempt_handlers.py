"""Handlers that make the store fail under their own worker at a chosen moment, for the attempt
pipeline's fleet tests (imported by worker processes via JOBENGINE_HANDLER_MODULES).

They act on the engine's connection of their own pool process, which is named
``jobengine-worker:<pid>`` in ``pg_stat_activity``, and use the test's own connection (from
``tests.fleet.handlers``) for that and for their effects.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from sqlalchemy import create_engine, make_url, text

from jobengine.context import JobContext
from jobengine.store.database import normalize_url, process_engine
from tests.fleet.handlers import record_effect
from workers.registry import job

GONE_TIMEOUT_SECONDS = 10.0
POLL = 0.02


def _engine() -> Any:
    return process_engine(os.environ["JOBENGINE_DATABASE_URL"])


def worker_application_name(pid: int | None = None) -> str:
    return f"jobengine-worker:{pid or os.getpid()}"


def cut_own_connection() -> None:
    """Terminate this process's engine connection and wait until its backend is gone, so the
    engine's next statement is certain to meet a dead connection."""
    name = worker_application_name()
    with _engine().connect() as conn:
        pids = (
            conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE application_name = :n AND datname = current_database()"
                ),
                {"n": name},
            )
            .scalars()
            .all()
        )
        conn.execute(text("SELECT pg_terminate_backend(p) FROM unnest(:pids) AS p"), {"pids": pids})
        deadline = time.monotonic() + GONE_TIMEOUT_SECONDS
        idle = threading.Event()
        while time.monotonic() < deadline:
            left = conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"),
                {"pids": pids},
            ).scalar()
            if not left:
                return
            conn.rollback()  # pg_stat_activity is read once per transaction: look again
            idle.wait(POLL)
    raise AssertionError(f"backends {pids} of {name} still alive after {GONE_TIMEOUT_SECONDS}s")


def refuse_connections() -> None:
    """Make the database refuse new connections, then cut this process's own. (Postgres
    takes that order only from a connection to another database.)"""
    url = make_url(normalize_url(os.environ["JOBENGINE_DATABASE_URL"]))
    elsewhere = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with elsewhere.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS false'))
    finally:
        elsewhere.dispose()
    cut_own_connection()


@job("cut_own_connection")
def cut_own_connection_then_return(ctx: JobContext) -> dict[str, Any]:
    """Records its effect, then kills the engine's connection before the outcome is written."""
    record_effect(ctx, "ran")
    cut_own_connection()
    return {"attempt": ctx.attempt}


@job("close_the_door")
def close_the_door(ctx: JobContext) -> dict[str, Any]:
    """On the attempts in payload ``close_attempts`` the database refuses connections from
    here on (the test opens it again), and with ``raise_after_closing`` the handler then
    fails, so its outcome must be written at once; otherwise an ordinary job."""
    record_effect(ctx, "ran")
    if ctx.attempt in ctx.payload.get("close_attempts", []):
        refuse_connections()
        if ctx.payload.get("raise_after_closing"):
            raise RuntimeError("the door is closed")
    return {"attempt": ctx.attempt}
