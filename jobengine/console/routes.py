"""``/console``: the pages a person reads, over the REST routes' own handlers and models.

Reads call the REST handlers (or, where REST has no such question, the repositories they use)
after the same scope checks, so a page shows exactly what the API would answer for the key;
the templates get REST's camelCase fields. Actions are POST forms with the session's CSRF
token and go through the REST handlers too, so history records the same actor (``api:<key
prefix>``) whichever surface a person used.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Form, Header, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from jobengine.api import (
    routes_artifacts,
    routes_dlq,
    routes_jobs,
    routes_limits,
    routes_quotas,
    routes_runs,
    routes_streams,
    routes_workers,
)
from jobengine.api.auth import acting_tenant, check_scope, key_for, sees_tracebacks, visible
from jobengine.api.cursors import decode_cursor, encode_cursor
from jobengine.api.errors import ApiError
from jobengine.api.keys import ADMIN, DLQ_REPLAY, JOBS_READ, JOBS_WRITE
from jobengine.api.schemas import JobOut
from jobengine.api.schemas_dlq import BulkReplayIn, DiscardIn, ReplayIn
from jobengine.api.state import api_state
from jobengine.console import views
from jobengine.console.charts import Node, dag_chart, latency_chart, throughput_chart
from jobengine.console.pages import render, wire
from jobengine.console.session import check_csrf, check_origin, current_key, forget, remember
from jobengine.dead_letters import merge_patch
from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.domain.status import FINAL_STATES, JobStatus
from jobengine.errors import ValidationError
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import JobFilter, JobsRepository
from jobengine.store.outbox import OutboxReader

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE = 50
NEWEST_FIRST = "c1"
"""The jobs page's cursor kind: it pages down from the newest, so REST's (upward) cursors and
its own are never mistaken for each other."""
PREVIEWED = 3
"""A dry run shows the patched payload of this many of the selected entries."""

Csrf = Annotated[str | None, Form(alias="csrf")]
Many = Annotated[list[str] | None, Query()]


def _list(values: list[str] | None) -> list[str]:
    return [v.strip() for v in values or [] if v and v.strip()]


def _moment(value: str | None, name: str) -> datetime | None:
    """A time from a form: ISO 8601; one without an offset is read as UTC, as pages show."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"{name} {value[:40]!r} is not a time", hint="Use ISO 8601, e.g. 2026-12-01T16:00."
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _enums(cls: type[Any], values: list[str], name: str) -> list[Any]:
    try:
        return [cls(v) for v in values]
    except ValueError:
        known = ", ".join(m.value for m in cls)
        raise ValidationError(
            f"{name} must be one of {known}", hint=f"Pick {name} from the list."
        ) from None


def _redirect(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303)


@router.get("", response_class=RedirectResponse)
def home() -> RedirectResponse:
    return _redirect("/console/jobs")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, error: str | None = None) -> HTMLResponse:
    return render(request, "login.html", None, error=error)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, api_key: Annotated[str, Form(alias="apiKey")]) -> Response:
    """The key must be live and hold ``jobs:read`` (or ``admin``), as every page needs."""
    try:
        check_origin(request)
        key = key_for(api_state(request), api_key.strip())
        check_scope(key, JOBS_READ, needed_for="the console shows jobs")
    except ApiError as exc:
        return render(request, "login.html", None, status_code=exc.status, error=exc)
    response = _redirect("/console/jobs")
    remember(response, api_key.strip(), secure=request.url.scheme == "https")
    return response


@router.post("/logout")
def logout(request: Request, csrf: Csrf = None) -> Response:
    current_key(request)
    check_csrf(request, csrf)
    response = _redirect("/console/login")
    forget(response)
    return response


def _head(request: Request) -> str:
    """The stream position now: events after it are what the page does not show yet."""
    with transaction(api_state(request).engine) as conn:
        return str(OutboxReader(conn).head())


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
        statuses=_enums(JobStatus, _list(status), "status"),
        types=_list(type),
        queues=_list(queue),
        created_from=_moment(created_after, "createdAfter"),
        created_to=_moment(created_before, "createdBefore"),
        text=(q or "").strip() or None,
    )
    after = _head(request)
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
    after = _head(request)
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


def _graph(run: Any) -> Any:
    nodes = [Node(j.id, j.key, j.type, j.status.value) for j in run.jobs]
    return dag_chart(nodes, [(e.parent_id, e.child_id) for e in run.edges])


@router.post("/jobs/{job_id}/cancel")
def cancel_job(request: Request, job_id: routes_jobs.JobId, csrf: Csrf = None) -> Response:
    key = current_key(request)
    check_csrf(request, csrf)
    check_scope(key, JOBS_WRITE, needed_for="cancelling a job")
    routes_jobs.cancel(request, job_id, key)
    return _redirect(f"/console/jobs/{job_id}")


@router.post("/jobs/{job_id}/retry")
def retry_job(request: Request, job_id: routes_jobs.JobId, csrf: Csrf = None) -> Response:
    key = current_key(request)
    check_csrf(request, csrf)
    check_scope(key, JOBS_WRITE, needed_for="retrying a failed job")
    routes_dlq.retry_job(request, job_id, key, ReplayIn(reason="retried from the console"))
    return _redirect(f"/console/jobs/{job_id}")


def _dlq_body(form: dict[str, str], **extra: Any) -> BulkReplayIn:
    patch_text = form.get("payloadPatch", "").strip()
    patch = None
    if patch_text:
        try:
            patch = json.loads(patch_text)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"payloadPatch is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                hint='Write a JSON object, e.g. {"command": "true"}.',
            ) from None
        if not isinstance(patch, dict):
            raise ValidationError("payloadPatch must be a JSON object", hint='e.g. {"a": 1}')
    return BulkReplayIn(
        type=_list(form.get("type", "").split(",")),
        queue=_list(form.get("queue", "").split(",")),
        failure_reason=_enums(
            DeadLetterReason, _list(form.get("failureReason", "").split(",")), "failureReason"
        ),
        error_class=_list(form.get("errorClass", "").split(",")),
        reason=form.get("note") or None,
        payload_patch=patch,
        **extra,
    )


@router.get("/dlq", response_class=HTMLResponse)
def dlq_page(
    request: Request,
    type: str | None = None,
    queue: str | None = None,
    failure_reason: Annotated[str | None, Query(alias="failureReason")] = None,
    error_class: Annotated[str | None, Query(alias="errorClass")] = None,
    status: str | None = None,
    tenant: str | None = None,
    cursor: str | None = None,
) -> HTMLResponse:
    key = current_key(request)
    form = {
        "type": type or "",
        "queue": queue or "",
        "failureReason": failure_reason or "",
        "errorClass": error_class or "",
        "status": status or "",
        "tenant": tenant or "",
    }
    body = _dlq_body(form)
    listed = routes_dlq.list_dead_letters(
        request,
        key,
        type=body.type or None,
        queue=body.queue or None,
        failure_reason=body.failure_reason or None,
        error_class=body.error_class or None,
        status=_list((status or "").split(",")) or None,
        limit=PAGE,
        cursor=cursor,
        tenant=(tenant or "").strip() or None,
    )
    args = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor" and v]
    return render(
        request,
        "dlq.html",
        key,
        entries=[wire(e) for e in listed.items],
        next_cursor=listed.next_cursor,
        total=listed.total,
        total_exact=listed.total_exact,
        form=form,
        query_args=args,
        reasons=list(DeadLetterReason),
    )


@router.post("/dlq/replay", response_class=HTMLResponse)
async def dlq_bulk_replay(request: Request) -> HTMLResponse:
    """Dry run first: the count and the patched payload of the first entries; replaying takes
    what the filter matches when it runs, at most ``routes_dlq.MAX_BULK``, as REST does."""
    raw = await request.form()
    form = {k: str(v) for k, v in raw.items()}
    page: HTMLResponse = await anyio.to_thread.run_sync(_bulk_replay, request, form)
    return page


def _bulk_replay(request: Request, form: dict[str, str]) -> HTMLResponse:
    key = current_key(request)
    check_csrf(request, form.get("csrf"))
    check_scope(key, DLQ_REPLAY, needed_for="replaying dead letters")
    dry_run = form.get("action") != "replay"
    body = _dlq_body(form, dry_run=dry_run)
    tenant = form.get("tenant", "").strip() or None
    after = _head(request)
    report = routes_dlq.replay_many(request, body, key, tenant)
    previews = []
    if dry_run:
        dead_letters = routes_dlq.service(api_state(request))
        owner = None if key.is_admin else key.tenant_id
        for entry_id in report.selected[:PREVIEWED]:
            entry = dead_letters.get(entry_id, owner)
            with transaction(api_state(request).engine) as conn:
                payload = JobsRepository(conn).get(entry.job_id).payload
            patched = merge_patch(payload, body.payload_patch) if body.payload_patch else payload
            previews.append(
                {"id": entry.id, "jobId": entry.job_id, "before": payload, "after": patched}
            )
    replayed = []
    if not dry_run:
        ids = [r.job_id for r in report.replayed]
        with transaction(api_state(request).engine) as conn:
            jobs = JobsRepository(conn)
            replayed = [wire(JobOut.of(jobs.get(i))) for i in ids]
    return render(
        request,
        "dlq_replay.html",
        key,
        report=wire(report),
        previews=previews,
        replayed=replayed,
        form=form,
        after=after,
    )


@router.get("/dlq/{dead_letter_id}", response_class=HTMLResponse)
def dead_letter_page(request: Request, dead_letter_id: routes_dlq.DeadLetterId) -> HTMLResponse:
    key = current_key(request)
    entry = routes_dlq.get_dead_letter(request, dead_letter_id, key)
    return render(request, "dead_letter.html", key, entry=wire(entry))


@router.post("/dlq/{dead_letter_id}/replay")
def replay_one(
    request: Request, dead_letter_id: routes_dlq.DeadLetterId, csrf: Csrf = None
) -> Response:
    key = current_key(request)
    check_csrf(request, csrf)
    check_scope(key, DLQ_REPLAY, needed_for="replaying a dead letter")
    routes_dlq.replay_dead_letter(
        request, dead_letter_id, key, ReplayIn(reason="replayed from the console")
    )
    return _redirect(f"/console/dlq/{dead_letter_id}")


@router.post("/dlq/{dead_letter_id}/discard")
def discard_one(
    request: Request, dead_letter_id: routes_dlq.DeadLetterId, csrf: Csrf = None
) -> Response:
    key = current_key(request)
    check_csrf(request, csrf)
    check_scope(key, DLQ_REPLAY, needed_for="discarding a dead letter")
    routes_dlq.discard_dead_letter(
        request, dead_letter_id, key, DiscardIn(reason="discarded from the console")
    )
    return _redirect(f"/console/dlq/{dead_letter_id}")


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
    after = _head(request)
    run = routes_runs.graph_of(api_state(request), key, run_id)
    return render(request, "run.html", key, run=wire(run), graph=_graph(run), after=after)


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


@router.get("/events")
def events(
    request: Request,
    after: Annotated[str | None, Query(max_length=60)] = None,
    job_id: Annotated[int | None, Query(alias="jobId", ge=1, le=2**63 - 1)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=60)] = None,
) -> StreamingResponse:
    """The REST feeds for the logged-in key, which a browser's EventSource can follow (it sends
    the session cookie, never an Authorization header): one job's (``jobId``, ending after
    its final state), or the tenant's (every tenant's for admin keys)."""
    key = current_key(request)
    check_scope(key, JOBS_READ)
    state = api_state(request)
    if job_id is not None:
        scope = routes_streams.job_scope(state, key, job_id)
    else:
        scope = routes_streams.feed_scope(key, key.is_admin)
    start = routes_streams.start_position(state, scope, last_event_id or after)
    return routes_streams.sse(state, scope, start)
