"""``/console/jobs`` and ``/console/runs``: the jobs table, a job, its actions, runs and their
graphs, read through the REST handlers and the jobs repository they use.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from jobengine.api import (
    routes_artifacts,
    routes_dlq,
    routes_jobs,
    routes_runs,
)
from jobengine.api.auth import acting_tenant, check_scope, sees_tracebacks, visible
from jobengine.api.cursors import decode_cursor, encode_cursor
from jobengine.api.keys import JOBS_WRITE
from jobengine.api.schemas import JobOut
from jobengine.api.schemas_dlq import ReplayIn
from jobengine.api.schemas_runs import RunDetail
from jobengine.api.state import api_state
from jobengine.console import views
from jobengine.console.charts import Node, dag_chart
from jobengine.console.forms import Csrf, Many, enums, moment, names
from jobengine.console.pages import redirect, render, stream_head, wire
from jobengine.console.session import check_csrf, current_key
from jobengine.domain.status import FINAL_STATES, JobStatus
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import JobFilter, JobsRepository

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE = 50
NEWEST_FIRST = "c1"
"""The jobs page's cursor kind: it pages down from the newest, so REST's (upward) cursors and
its own are never mistaken for each other."""


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    status: Many = None,
    type: Many = None,
    queue: Many = None,
    tenant: str | None = None,
    created_after: Annotated[str | None, Query(alias="createdAfter")] = None,
    created_before: Annotated[str | None, Query(alias="createdBefore")] = None,
    q: str | None = None,
    cursor: str | None = None,
) -> HTMLResponse:
    key = current_key(request)
    state = api_state(request)
    wanted_tenant = (tenant or "").strip() or None
    everyone = key.is_admin and wanted_tenant is None
    flt = JobFilter(
        tenant_id=None if everyone else acting_tenant(key, wanted_tenant),
        statuses=enums(JobStatus, names(status), "status"),
        types=names(type),
        queues=names(queue),
        created_from=moment(created_after, "createdAfter"),
        created_to=moment(created_before, "createdBefore"),
        text=(q or "").strip() or None,
    )
    after = stream_head(request)
    with transaction(state.engine) as conn:
        jobs = JobsRepository(conn)
        below = decode_cursor(cursor, NEWEST_FIRST) if cursor else 0
        page = jobs.list(flt, after_id=below, limit=PAGE, newest_first=True)
        counts = views.state_counts(conn, flt)
    args = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor" and v]
    return render(
        request,
        "jobs.html",
        key,
        jobs=[wire(JobOut.of(j, show_traceback=sees_tracebacks(key))) for j in page.jobs],
        next_cursor=(
            encode_cursor(page.next_cursor, NEWEST_FIRST) if page.next_cursor is not None else None
        ),
        counts=counts,
        statuses=list(JobStatus),
        chosen=set(flt.statuses),
        filters={
            "type": ", ".join(flt.types),
            "queue": ", ".join(flt.queues),
            "tenant": wanted_tenant or "",
            "createdAfter": created_after or "",
            "createdBefore": created_before or "",
            "q": flt.text or "",
        },
        query_args=args,
        after=after,
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: routes_jobs.JobId) -> HTMLResponse:
    key = current_key(request)
    state = api_state(request)
    after = stream_head(request)
    with transaction(state.engine) as conn:
        job = visible(key, JobsRepository(conn).get(job_id))
    history = routes_jobs.history(request, job_id, key)
    artifacts = routes_artifacts.job_artifacts(request, job_id, key)
    graph = None
    if job.run_id is not None:
        run = routes_runs.graph_of(state, key, job.run_id)
        graph = _graph(run)
    shown = wire(JobOut.of(job, show_traceback=sees_tracebacks(key)))
    details = (job.last_error or {}).get("details") or {}
    outcome = job.result if isinstance(job.result, dict) else {}
    return render(
        request,
        "job.html",
        key,
        job=shown,
        run_id=job.run_id,
        exit_code=details.get("exit_code", outcome.get("exit_code")),
        stderr_tail=details.get("stderr", outcome.get("stderr")),
        history=[wire(h) for h in history.items],
        artifacts=[wire(a) for a in artifacts.items],
        graph=graph,
        final=job.status in (JobStatus.COMPLETED, JobStatus.CANCELLED),
        failed=job.status is JobStatus.FAILED,
        after=after,
        live_job=None if job.status in FINAL_STATES else job.id,
    )


def _graph(run: RunDetail) -> Markup:
    nodes = [Node(j.id, j.key, j.type, j.status.value) for j in run.jobs]
    return dag_chart(nodes, [(e.parent_id, e.child_id) for e in run.edges])


@router.post("/jobs/{job_id}/cancel")
def cancel_job(request: Request, job_id: routes_jobs.JobId, csrf: Csrf = None) -> Response:
    key = current_key(request)
    check_csrf(request, csrf)
    check_scope(key, JOBS_WRITE, needed_for="cancelling a job")
    routes_jobs.cancel(request, job_id, key)
    return redirect(f"/console/jobs/{job_id}")


@router.post("/jobs/{job_id}/retry")
def retry_job(request: Request, job_id: routes_jobs.JobId, csrf: Csrf = None) -> Response:
    key = current_key(request)
    check_csrf(request, csrf)
    check_scope(key, JOBS_WRITE, needed_for="retrying a failed job")
    routes_dlq.retry_job(request, job_id, key, ReplayIn(reason="retried from the console"))
    return redirect(f"/console/jobs/{job_id}")


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request, cursor: str | None = None) -> HTMLResponse:
    key = current_key(request)
    listed = routes_runs.list_runs(
        request, key, status=None, project_id=None, name=None, limit=PAGE, cursor=cursor
    )
    return render(
        request,
        "runs.html",
        key,
        runs=[wire(r) for r in listed.items],
        next_cursor=listed.next_cursor,
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: routes_runs.RunId) -> HTMLResponse:
    key = current_key(request)
    after = stream_head(request)
    run = routes_runs.graph_of(api_state(request), key, run_id)
    return render(request, "run.html", key, run=wire(run), graph=_graph(run), after=after)
