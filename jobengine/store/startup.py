"""What every long-running role checks before it serves, and how it connects.

At start a role (reaper, API, worker) makes sure its database is usable: reachable, letting it
in, migrated to exactly this release's schema. Each problem is one log line saying which it is
and how to fix it; problems that can go away by themselves (a server still starting, a wrong
host fixed by DNS, a migration not yet run, slots full) are retried with a capped backoff, and
the two that cannot (a URL that does not parse, a schema from a newer release) end the process
with ``EXIT_CONFIG``. Then the fleet's connection budget is compared with what the server
allows, with a warning when the fleet as stated would not fit.

Connections of long-running roles name their role (``application_name``), keep TCP alive so a
dead server or partition is noticed in seconds rather than hours, and bound their statements,
so a stalled server cannot hang a leader forever.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import structlog
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from config.settings import Settings
from jobengine.store.backoff import Backoff
from jobengine.store.database import normalize_url
from jobengine.store.migrate import alembic_config

log = structlog.get_logger("jobengine.startup")

EXIT_CONFIG = 78
"""``EX_CONFIG`` of sysexits.h: a supervisor should not restart the process unchanged."""

# ---- the connection budget: what each process of the fleet may hold at once ---------------
CONNECTIONS_PER_WORKER_PROCESS = 1
"""A pool process: one connection for its hot path (claim, heartbeat, outcome)."""
CONNECTIONS_PER_WORKER_MAIN = 1
"""A worker's main process: the registry heartbeat and its start-up check."""
CONNECTIONS_PER_API_PROCESS = 30
"""``jobengine api``: its engine's pool of 10 plus an overflow of 20."""
REAPER_POOL_SIZE = 1
REAPER_MAX_OVERFLOW = 1
CONNECTIONS_PER_REAPER = REAPER_POOL_SIZE + REAPER_MAX_OVERFLOW
"""Leadership and maintenance run one after the other on one connection; one spare."""

KEEPALIVE_IDLE_SECONDS = 10
KEEPALIVE_INTERVAL_SECONDS = 5
KEEPALIVE_COUNT = 3
TCP_USER_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_SECONDS = 5
RETRY_CAP_SECONDS = 30.0


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
    extra = {k: str(v) for k, v in role_connect_args(role).items() if k not in parsed.query}
    return parsed.update_query_dict(extra).render_as_string(hide_password=False)


# ---- start-up checks ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    says: str
    """What is wrong, and how to fix it: one line."""
    permanent: bool = False
    """True when waiting cannot help: the process exits with ``EXIT_CONFIG``."""


def _connection_problem(exc: DBAPIError, where: str) -> Problem:
    text = str(exc.orig).strip()
    low = text.lower()
    detail = text.splitlines()[0] if text else type(exc.orig).__name__
    if "too many clients" in low or "connection slots are reserved" in low:
        return Problem(
            "DATABASE_FULL",
            f"Postgres at {where} has no free connection slot ({detail}): raise "
            "max_connections or shrink the fleet (see the connection budget in the README)",
        )
    if "database" in low and "does not exist" in low:
        return Problem(
            "DATABASE_MISSING",
            f"the database in JOBENGINE_DATABASE_URL ({where}) does not exist ({detail}): "
            "create it (createdb) or fix the URL's database name",
        )
    refusals = ("password authentication failed", "role", "permission denied", "pg_hba.conf")
    if any(word in low for word in refusals):
        return Problem(
            "DATABASE_REFUSED_ROLE",
            f"Postgres at {where} refused the role in JOBENGINE_DATABASE_URL ({detail}): "
            "check the user and password, GRANT CONNECT on the database, and pg_hba.conf",
        )
    return Problem(
        "DATABASE_UNREACHABLE",
        f"cannot reach Postgres at {where} ({detail}): check JOBENGINE_DATABASE_URL's host "
        "and port and that the server runs",
    )


SCHEMA_PRESENT = "SELECT to_regclass('alembic_version') IS NOT NULL"
SCHEMA_REVISION = "SELECT version_num FROM alembic_version LIMIT 1"


def _schema_problem(conn: Connection) -> Problem | None:
    current: str | None = None
    if conn.exec_driver_sql(SCHEMA_PRESENT).scalar():
        current = conn.exec_driver_sql(SCHEMA_REVISION).scalar()
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    if current == head:
        return None
    if current is None:
        return Problem(
            "SCHEMA_MISSING",
            "the database has no jobengine schema: run `jobengine db upgrade` (once, from one "
            "host), then this process carries on by itself",
        )
    try:
        script.get_revision(current)
    except CommandError:
        return Problem(
            "SCHEMA_NEWER",
            f"the database's schema is at revision {current}, which this release does not know "
            f"(its newest is {head}): a newer jobengine migrated it; run that release here",
            permanent=True,
        )
    return Problem(
        "SCHEMA_BEHIND",
        f"the database's schema is at revision {current}, this release needs {head}: run "
        "`jobengine db upgrade`, then this process carries on by itself",
    )


def _where(url: str) -> str:
    parsed = make_url(normalize_url(url))
    return f"{parsed.host or 'local socket'}:{parsed.port or 5432}/{parsed.database or ''}"


def diagnose(engine: Engine) -> Problem | None:
    """The first thing that keeps this release from using the database, or None."""
    where = _where(engine.url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            return _schema_problem(conn)
    except DBAPIError as exc:
        return _connection_problem(exc, where)


# ---- the connection budget ------------------------------------------------------------------

SERVER_SLOTS = """
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int
         + coalesce(nullif(current_setting('reserved_connections', true), ''), '0')::int
         AS reserved,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS in_use,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'
          AND application_name NOT LIKE 'jobengine%%') AS others
"""


@dataclass(frozen=True, slots=True)
class Budget:
    needed: int
    """What the fleet as stated may hold at once (``fleet_*`` settings times per-process needs)."""
    usable: int
    """``max_connections`` minus the slots reserved for superusers."""
    others: int
    """Connections open now that are not the engine's (not named ``jobengine-*``)."""
    max_connections: int
    reserved: int
    in_use: int

    @property
    def fits(self) -> bool:
        return self.needed + self.others <= self.usable


def fleet_needs(settings: Settings) -> int:
    per_worker = CONNECTIONS_PER_WORKER_MAIN + (
        settings.fleet_worker_concurrency * CONNECTIONS_PER_WORKER_PROCESS
    )
    return (
        settings.fleet_workers * per_worker
        + settings.fleet_api_processes * CONNECTIONS_PER_API_PROCESS
        + settings.fleet_reapers * CONNECTIONS_PER_REAPER
    )


def connection_budget(settings: Settings, conn: Connection) -> Budget:
    row = conn.exec_driver_sql(SERVER_SLOTS).mappings().one()
    return Budget(
        needed=fleet_needs(settings),
        usable=row["max_connections"] - row["reserved"],
        others=row["others"],
        max_connections=row["max_connections"],
        reserved=row["reserved"],
        in_use=row["in_use"],
    )


def report_budget(settings: Settings, engine: Engine, role: str) -> Budget | None:
    """Log the budget; a warning, naming the settings to change, when the fleet would not fit."""
    try:
        with engine.connect() as conn:
            budget = connection_budget(settings, conn)
    except DBAPIError as exc:
        log.warning("connection_budget_unknown", role=role, error=str(exc.orig).strip())
        return None
    fields = {
        "role": role,
        "needed": budget.needed,
        "usable": budget.usable,
        "others": budget.others,
        "in_use": budget.in_use,
    }
    if budget.fits:
        log.info("connection_budget", **fields)
    else:
        log.warning(
            "connection_budget_exceeded",
            **fields,
            says=f"the fleet as stated (JOBENGINE_FLEET_WORKERS={settings.fleet_workers} x "
            f"(1 + JOBENGINE_FLEET_WORKER_CONCURRENCY={settings.fleet_worker_concurrency}), "
            f"JOBENGINE_FLEET_API_PROCESSES={settings.fleet_api_processes} x "
            f"{CONNECTIONS_PER_API_PROCESS}, JOBENGINE_FLEET_REAPERS={settings.fleet_reapers} "
            f"x {CONNECTIONS_PER_REAPER}) needs {budget.needed} connections and others hold "
            f"{budget.others}, but Postgres allows {budget.usable} (max_connections "
            f"{budget.max_connections} - {budget.reserved} reserved): raise max_connections, "
            "put a pooler in front, or run fewer processes; when slots run out work slows down",
        )
    return budget


def check_at_start(
    settings: Settings,
    role: str,
    *,
    engine: Engine | None = None,
    database_url: str | None = None,
    stop: threading.Event | None = None,
) -> bool:
    """Wait until the database is usable by this release, then report the connection budget.

    Returns False if ``stop`` was set while waiting. A problem that cannot go away by itself
    raises ``SystemExit(EXIT_CONFIG)`` after its line. ``engine`` (or else ``database_url``,
    else the settings' URL) is what the role will use; one made here is disposed of.
    """
    url = database_url or settings.database_url
    if engine is None:
        if url is None:
            raise ValueError("check_at_start needs an engine, a database_url or a configured URL")
        try:
            own = create_engine(
                normalize_url(url),
                pool_size=1,
                max_overflow=0,
                connect_args=role_connect_args(role),
            )
        except ArgumentError as exc:
            log.error(
                "database_not_ready",
                role=role,
                problem="DATABASE_URL_INVALID",
                says=f"JOBENGINE_DATABASE_URL is not a database URL ({exc}): set it like "
                "postgresql+psycopg://user:password@host:5432/dbname",
            )
            raise SystemExit(EXIT_CONFIG) from None
        try:
            return check_at_start(settings, role, engine=own, stop=stop)
        finally:
            own.dispose()
    waiter = stop or threading.Event()
    backoff = Backoff(1.0, RETRY_CAP_SECONDS)
    last: Problem | None = None
    while True:
        problem = diagnose(engine)
        if problem is None:
            break
        if last is None or problem.code != last.code:
            log.error(
                "database_not_ready",
                role=role,
                problem=problem.code,
                says=problem.says,
                retrying=not problem.permanent,
            )
            last = problem
        if problem.permanent:
            raise SystemExit(EXIT_CONFIG)
        if waiter.wait(backoff.next()):
            return False
    if last is not None:
        log.info("database_ready", role=role)
    report_budget(settings, engine, role)
    return True
