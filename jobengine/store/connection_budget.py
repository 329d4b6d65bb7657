"""The connection budget: what each process of the fleet may hold at once, and whether the
fleet as stated (the ``fleet_*`` settings) fits the server's slots.

The figures are the one place the fleet's need is written down; the README's table and each
role's pool size follow them. Checked at the start of every long-running role.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from config.settings import Settings

log = structlog.get_logger("jobengine.startup")

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
    if budget.fits or settings.db_pooler == "transaction":
        # Through a transaction pooler Postgres sees the pooler's server connections, whatever
        # the processes hold: its pool sizes are the budget (deploy/RUNBOOK.md, "PgBouncer").
        log.info("connection_budget", **fields, pooler=settings.db_pooler)
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
