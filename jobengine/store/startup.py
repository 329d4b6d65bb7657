"""What every long-running role checks before it serves.

At start a role (reaper, API, worker) makes sure its database is usable: reachable, letting it
in, migrated to exactly this release's schema. Each problem is one log line saying which it is
and how to fix it; problems that can go away by themselves (a server still starting, a wrong
host fixed by DNS, a migration not yet run, slots full) are retried with a capped backoff, and
the two that cannot (a URL that does not parse, a schema from a newer release) end the process
with ``EXIT_CONFIG``, as does a host whose stated processes exceed its connection budget
(``host_budget``). Then the fleet's connection budget is compared with what the server
allows, with a warning when the fleet as stated would not fit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import structlog
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from config.settings import Settings
from jobengine.store.backoff import Backoff
from jobengine.store.connection_budget import report_budget
from jobengine.store.database import normalize_url
from jobengine.store.host_budget import HostBudgetExceeded, HostShare, host_share
from jobengine.store.hosts import hosts_of
from jobengine.store.migrate import alembic_config
from jobengine.store.role_connections import role_connect_args

log = structlog.get_logger("jobengine.startup")

EXIT_CONFIG = 78
"""``EX_CONFIG`` of sysexits.h: a supervisor should not restart the process unchanged."""
RETRY_CAP_SECONDS = 30.0


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
    """Every host the URL lists (libpq tries them in turn), so a refusal names them all."""
    parsed = make_url(normalize_url(url))
    hosts = ",".join(f"{host}:{port}" for host, port in hosts_of(url)) or "local socket:5432"
    return f"{hosts}/{parsed.database or ''}"


def diagnose(engine: Engine) -> Problem | None:
    """The first thing that keeps this release from using the database, or None."""
    where = _where(engine.url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            return _schema_problem(conn)
    except DBAPIError as exc:
        return _connection_problem(exc, where)


def check_host_budget(settings: Settings, role: str) -> HostShare:
    """The host's connection budget (``host_budget``): one line, and this host's share; exits
    when it is exceeded, since no waiting makes the stated processes fit."""
    try:
        share = host_share(settings)
    except HostBudgetExceeded as exc:
        log.error("host_connection_budget_exceeded", role=role, says=str(exc))
        raise SystemExit(EXIT_CONFIG) from None
    if share.budget is not None:
        log.info(
            "host_connection_budget",
            role=role,
            budget=share.budget,
            workers_and_reapers=share.fixed,
            api_each=share.api_each,
        )
    return share


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
    check_host_budget(settings, role)
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
