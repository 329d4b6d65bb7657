"""How a long-running role connects: named, kept alive, and with bounded waits.

Connections name their role (``application_name``, seen in ``pg_stat_activity``), keep TCP
alive so a dead server or a partition is noticed in seconds rather than hours, and the
reaper's bound their statements, lock waits and open transactions, so a stalled server cannot
hang a leader forever.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.exc import DBAPIError

from jobengine.store.connection_budget import REAPER_MAX_OVERFLOW, REAPER_POOL_SIZE
from jobengine.store.database import NO_AUTOMATIC_PREPARE, normalize_url, prepare_args
from jobengine.store.pooler import transaction_pooled

log = structlog.get_logger("jobengine.startup")

KEEPALIVE_IDLE_SECONDS = 10
KEEPALIVE_INTERVAL_SECONDS = 5
KEEPALIVE_COUNT = 3
TCP_USER_TIMEOUT_MS = 30_000
API_TCP_USER_TIMEOUT_MS = 5_000
"""The API's: a request over a silent link must fail (503, retryable) before its client gives
up, where the pool's ping would otherwise wait 30 s for an answer that never comes."""
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
        "tcp_user_timeout": API_TCP_USER_TIMEOUT_MS if role == "api" else TCP_USER_TIMEOUT_MS,
        **prepare_args(),
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
    if options and not transaction_pooled():  # the pooler's entry sets them (store.pooler)
        args["options"] = " ".join(options)
    return args


def reaper_bounds(leader_ttl_seconds: float) -> dict[str, float]:
    """The reaper's bounds in seconds, by Postgres setting: no statement, lock wait or open
    transaction outlasts the leader's lease, so a stalled server or a frozen leader holding
    the leadership row cannot keep the other reapers from taking over for longer than that."""
    ttl = max(leader_ttl_seconds, 1.0)
    return {
        "statement_timeout": ttl,
        "lock_timeout": ttl / 3,
        "idle_in_transaction_session_timeout": ttl / 2,
    }


def reaper_engine(url: str, leader_ttl_seconds: float) -> Engine:
    """The reaper's engine, its connections bounded by ``reaper_bounds``."""
    bounds = reaper_bounds(leader_ttl_seconds)
    return create_engine(
        normalize_url(url),
        pool_size=REAPER_POOL_SIZE,
        max_overflow=REAPER_MAX_OVERFLOW,
        pool_pre_ping=True,
        connect_args=role_connect_args(
            "reaper",
            statement_timeout_seconds=bounds["statement_timeout"],
            lock_timeout_seconds=bounds["lock_timeout"],
            idle_in_transaction_seconds=bounds["idle_in_transaction_session_timeout"],
        ),
    )


SETTINGS_MS = """
SELECT name, setting::bigint AS ms FROM pg_settings WHERE name = ANY(%(names)s) AND unit = 'ms'
"""


def check_reaper_bounds(engine: Engine, leader_ttl_seconds: float) -> list[str]:
    """The reaper's bounds its connections lack (unset, or looser than ``reaper_bounds``),
    logged as one warning saying where to set them; run once at start.

    Directly they come with every connection; through a pooler in transaction mode they must
    come from the reaper's pool (``store.pooler``), and this is how a missing
    ``connect_query`` is noticed before a stalled leader is."""
    wanted = reaper_bounds(leader_ttl_seconds)
    try:
        with engine.connect() as conn:
            found = {
                str(row.name): int(row.ms)
                for row in conn.exec_driver_sql(SETTINGS_MS, {"names": list(wanted)})
            }
    except DBAPIError as exc:  # gone again since the start check: the leader's loop rides it out
        log.warning("reaper_bounds_unknown", error=str(exc.orig).strip())
        return []
    missing = [
        name
        for name, seconds in wanted.items()
        if not 0 < found.get(name, 0) <= int(seconds * 1000)
    ]
    if missing:
        log.warning(
            "reaper_bounds_missing",
            missing=missing,
            says="the reaper's connections lack "
            + ", ".join(f"{name} <= {int(wanted[name] * 1000)}ms" for name in missing)
            + ": through PgBouncer in transaction mode set them in the reaper's database entry "
            "(connect_query, see deploy/pgbouncer/pgbouncer.ini) or on its role (ALTER ROLE "
            "... SET ...); else a stalled leader can hold the leadership past its lease",
        )
    return missing


def with_role_parameters(url: str, role: str) -> str:
    """``url`` with the role's libpq parameters in its query, for engines made elsewhere from
    a URL alone; parameters the URL already sets win."""
    parsed = make_url(normalize_url(url))
    libpq = {k: v for k, v in role_connect_args(role).items() if k not in NO_AUTOMATIC_PREPARE}
    extra = {k: str(v) for k, v in libpq.items() if k not in parsed.query}
    return parsed.update_query_dict(extra).render_as_string(hide_password=False)
