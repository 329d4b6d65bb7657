"""How a long-running role connects: named, kept alive, and with bounded waits.

Connections name their role (``application_name``, seen in ``pg_stat_activity``), keep TCP
alive so a dead server or a partition is noticed in seconds rather than hours, and the
reaper's bound their statements, lock waits and open transactions, so a stalled server cannot
hang a leader forever.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, make_url

from jobengine.store.connection_budget import REAPER_MAX_OVERFLOW, REAPER_POOL_SIZE
from jobengine.store.database import NO_AUTOMATIC_PREPARE, normalize_url

KEEPALIVE_IDLE_SECONDS = 10
KEEPALIVE_INTERVAL_SECONDS = 5
KEEPALIVE_COUNT = 3
TCP_USER_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_SECONDS = 5


def role_connect_args(
    role: str,
    *,
    statement_timeout_seconds: float | None = None,
    lock_timeout_seconds: float | None = None,
    idle_in_transaction_seconds: float | None = None,
) -> dict[str, Any]:
    """libpq parameters for a long-running role's connections (psycopg ``connect_args``)."""
    args: dict[str, Any] = {
        "application_name": f"jobengine-{role}",
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "keepalives": 1,
        "keepalives_idle": KEEPALIVE_IDLE_SECONDS,
        "keepalives_interval": KEEPALIVE_INTERVAL_SECONDS,
        "keepalives_count": KEEPALIVE_COUNT,
        "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
        **NO_AUTOMATIC_PREPARE,
    }
    options = [
        f"-c {name}={int(seconds * 1000)}"
        for name, seconds in (
            ("statement_timeout", statement_timeout_seconds),
            ("lock_timeout", lock_timeout_seconds),
            ("idle_in_transaction_session_timeout", idle_in_transaction_seconds),
        )
        if seconds is not None
    ]
    if options:
        args["options"] = " ".join(options)
    return args


def reaper_engine(url: str, leader_ttl_seconds: float) -> Engine:
    """The reaper's engine: no statement, lock wait or open transaction outlasts the leader's
    lease, so a stalled server or a frozen leader holding the leadership row cannot keep the
    other reapers from taking over for longer than that."""
    ttl = max(leader_ttl_seconds, 1.0)
    return create_engine(
        normalize_url(url),
        pool_size=REAPER_POOL_SIZE,
        max_overflow=REAPER_MAX_OVERFLOW,
        pool_pre_ping=True,
        connect_args=role_connect_args(
            "reaper",
            statement_timeout_seconds=ttl,
            lock_timeout_seconds=ttl / 3,
            idle_in_transaction_seconds=ttl / 2,
        ),
    )


def with_role_parameters(url: str, role: str) -> str:
    """``url`` with the role's libpq parameters in its query, for engines made elsewhere from
    a URL alone; parameters the URL already sets win."""
    parsed = make_url(normalize_url(url))
    libpq = {k: v for k, v in role_connect_args(role).items() if k not in NO_AUTOMATIC_PREPARE}
    extra = {k: str(v) for k, v in libpq.items() if k not in parsed.query}
    return parsed.update_query_dict(extra).render_as_string(hide_password=False)
