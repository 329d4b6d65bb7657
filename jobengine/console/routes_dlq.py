"""``/console/dlq``: dead letters, one at a time or by filter, through REST's own handlers
(so the same refusals, limits and actor apply).
"""

from __future__ import annotations

from typing import Annotated, cast, get_args

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from jobengine.api import (
    routes_dlq,
)
from jobengine.api.auth import check_scope
from jobengine.api.keys import DLQ_REPLAY
from jobengine.api.schemas import JobOut
from jobengine.api.schemas_dlq import DiscardIn, ReplayIn
from jobengine.api.state import api_state
from jobengine.console.forms import Csrf, bulk_body, names
from jobengine.console.pages import redirect, render, stream_head, wire
from jobengine.console.session import check_csrf, current_key
from jobengine.dead_letters import merge_patch
from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.errors import ValidationError
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import JobsRepository

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE = 50
PREVIEWED = 3
"""A dry run shows the patched payload of this many of the selected entries."""


def _statuses(value: str | None) -> list[routes_dlq.StatusFilter]:
    wanted = names((value or "").split(","))
    known = get_args(routes_dlq.StatusFilter)
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise ValidationError(
            f"status {unknown[0][:40]!r} is not one of {', '.join(known)}",
            hint="Pick the status from the list.",
        )
    return [cast(routes_dlq.StatusFilter, s) for s in wanted]


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
    body = bulk_body(form)
    listed = routes_dlq.list_dead_letters(
        request,
        key,
        type=body.type or None,
        queue=body.queue or None,
        failure_reason=body.failure_reason or None,
        error_class=body.error_class or None,
        status=_statuses(status) or None,
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
    body = bulk_body(form, dry_run=dry_run)
    tenant = form.get("tenant", "").strip() or None
    after = stream_head(request)
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
    return redirect(f"/console/dlq/{dead_letter_id}")


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
    return redirect(f"/console/dlq/{dead_letter_id}")
