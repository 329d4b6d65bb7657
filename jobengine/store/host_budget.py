"""The connection budget of one host: one number every process on the host sizes itself by.

``JOBENGINE_DB_CONNECTIONS_PER_HOST`` says how many Postgres connections the jobengine processes
of a host may hold together, and the ``host_*`` settings say which processes run there. The
needs that cannot shrink come first (one connection per worker pool process and per worker
main process, two per reaper: ``connection_budget``); what is left is shared by the host's API
processes, each taking at most its usual 30. So ``workers x (1 + concurrency)`` cannot quietly
outgrow the slots the operator gave the host: a process whose host would exceed the budget
says so at start, with the numbers and the fix, and exits (``EXIT_CONFIG``) instead of finding
out under load.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.settings import Settings
from jobengine.store.connection_budget import (
    CONNECTIONS_PER_API_PROCESS,
    CONNECTIONS_PER_REAPER,
    CONNECTIONS_PER_WORKER_MAIN,
    CONNECTIONS_PER_WORKER_PROCESS,
)

API_POOL_SIZE = 10
"""Connections an API process keeps open; the rest of its share is overflow, closed when idle."""
API_MIN_CONNECTIONS = 2
"""Below this an API process would serve one request at a time: not a usable share."""


@dataclass(frozen=True, slots=True)
class HostShare:
    fixed: int
    """What the host's workers and reapers hold, which no setting of the engine shrinks."""
    api_each: int
    """Each API process's pool, pool size plus overflow."""
    budget: int | None

    @property
    def api_pool_size(self) -> int:
        return min(API_POOL_SIZE, self.api_each)

    @property
    def api_max_overflow(self) -> int:
        return self.api_each - self.api_pool_size


class HostBudgetExceeded(Exception):
    """The processes stated for this host need more connections than its budget."""


def host_share(settings: Settings) -> HostShare:
    """How the host's budget is shared; raises ``HostBudgetExceeded`` when it cannot be."""
    per_worker = CONNECTIONS_PER_WORKER_MAIN + (
        settings.fleet_worker_concurrency * CONNECTIONS_PER_WORKER_PROCESS
    )
    fixed = settings.host_workers * per_worker + settings.host_reapers * CONNECTIONS_PER_REAPER
    budget = settings.db_connections_per_host
    if budget is None:
        return HostShare(fixed=fixed, api_each=CONNECTIONS_PER_API_PROCESS, budget=None)
    apis = settings.host_api_processes
    left = budget - fixed
    api_each = min(CONNECTIONS_PER_API_PROCESS, left // apis) if apis else 0
    if left < 0 or (apis and api_each < API_MIN_CONNECTIONS):
        least = fixed + apis * API_MIN_CONNECTIONS
        raise HostBudgetExceeded(
            f"this host's processes need at least {least} Postgres connections but "
            f"JOBENGINE_DB_CONNECTIONS_PER_HOST={budget}: JOBENGINE_HOST_WORKERS="
            f"{settings.host_workers} x (1 + JOBENGINE_FLEET_WORKER_CONCURRENCY="
            f"{settings.fleet_worker_concurrency}) + JOBENGINE_HOST_REAPERS="
            f"{settings.host_reapers} x {CONNECTIONS_PER_REAPER} = {fixed}, plus "
            f"JOBENGINE_HOST_API_PROCESSES={apis} x at least {API_MIN_CONNECTIONS}: raise the "
            "budget (and max_connections), or run fewer or smaller workers on this host "
            "(see deploy/RUNBOOK.md, sizing)"
        )
    return HostShare(fixed=fixed, api_each=api_each, budget=budget)
