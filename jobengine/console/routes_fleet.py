"""``/console/fleet`` and ``/console/charts``: workers, queues, leases, limits, quotas and
schedules (admin), and the charts of a window of history.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from jobengine.api import (
    routes_limits,
    routes_quotas,
    routes_workers,
)
from jobengine.api.auth import check_scope
from jobengine.api.keys import ADMIN
from jobengine.api.state import api_state
from jobengine.console import views
from jobengine.console.charts import latency_chart, throughput_chart
from jobengine.console.pages import render, wire
from jobengine.console.session import current_key
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import JobsRepository

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/fleet", response_class=HTMLResponse)
def fleet_page(request: Request) -> HTMLResponse:
    key = current_key(request)
    check_scope(key, ADMIN, needed_for="the fleet page shows every tenant's workers and queues")
    state = api_state(request)
    workers = routes_workers.list_workers(request, include_gone=True)
    with transaction(state.engine) as conn:
        depths = views.queue_depths(conn)
        leases = views.leases(conn)
        stuck = JobsRepository(conn).stuck()
        schedules = views.schedules(conn)
    return render(
        request,
        "fleet.html",
        key,
        workers=wire(workers),
        depths=depths,
        leases=leases,
        stuck=stuck,
        limits=wire(routes_limits.list_limits(request)),
        quotas=wire(routes_quotas.list_quotas(request)),
        fair=wire(routes_quotas.list_fair_queues(request)),
        schedules=schedules,
    )


@router.get("/charts", response_class=HTMLResponse)
def charts_page(
    request: Request, minutes: Annotated[int, Query(ge=5, le=24 * 60)] = 60
) -> HTMLResponse:
    key = current_key(request)
    tenant = None if key.is_admin else key.tenant_id
    window = views.Window.last(minutes)
    with transaction(api_state(request).engine) as conn:
        series = views.throughput(conn, window, tenant)
        latencies = views.latencies(conn, window.since, tenant)
    return render(
        request,
        "charts.html",
        key,
        minutes=minutes,
        window=window,
        throughput=[(s, throughput_chart(s)) for s in series],
        latencies=[(lat, latency_chart(lat)) for lat in latencies],
    )
