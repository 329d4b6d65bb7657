"""``jobengine backfills``: create (or dry-run), list, inspect and cancel backfills; show each
source's watermark.

``--json`` prints the fields the REST API answers (``/api/v1/backfills``,
``/api/v1/backfill-sources``), camelCase as there. A created backfill's jobs are made by the
leading reaper, a batch a tick; ``get`` shows how far it got. Exit codes as for every command:
0 done, 1 an error (a refused range, an unknown backfill), 2 bad usage.
"""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import BaseModel
from rich import box
from rich.table import Table

from jobengine.api.schemas_backfills import (
    BackfillCancelled,
    BackfillCreated,
    BackfillList,
    BackfillOut,
    BackfillSourceList,
    BackfillSourceOut,
    PlanOut,
)
from jobengine.backfills import service
from jobengine.backfills.model import (
    Backfill,
    BackfillSpec,
    BackfillStatus,
    CadenceSpec,
    JobTemplate,
    Pacing,
    Plan,
    Progress,
)
from jobengine.backfills.repository import BackfillRepository
from jobengine.cli_common import (
    JsonOption,
    cli_actor,
    cli_origin,
    files_refusals,
    job_types,
    parse_choices,
    parse_json,
    parse_time,
    store,
    table_console,
    when,
)
from jobengine.store.database import transaction

backfills_app = typer.Typer(
    no_args_is_help=True,
    help="Backfill a source's slots over a time range, paced; show each source's watermark.",
)

Tenant = Annotated[str, typer.Option(help="The tenant the backfill belongs to.")]


def _print_json(model: BaseModel) -> None:
    typer.echo(model.model_dump_json(by_alias=True))


def _plan_line(plan: Plan) -> str:
    span = f"{when(plan.first)} .. {when(plan.last)}" if plan.total else "no slot"
    return f"{plan.total} slot(s) ({span}): {plan.new} new, {plan.existing} with a job already"


def _progress_line(progress: Progress) -> str:
    return (
        f"{progress.total} slot(s): {progress.created} created, {progress.existing} existing;"
        f" {progress.queued} queued, {progress.running} running, {progress.completed}"
        f" completed, {progress.failed} failed, {progress.cancelled} cancelled"
    )


@backfills_app.command("create")
@files_refusals("backfill.create")
def backfills_create(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="The source (the series the slots belong to).")],
    start: Annotated[str, typer.Option(help="ISO 8601 with an offset; slots at or after it.")],
    end: Annotated[str, typer.Option(help="ISO 8601 with an offset; slots before it (excluded).")],
    job_type: Annotated[str, typer.Option("--type", help="The job type each slot gets.")],
    cron: Annotated[str | None, typer.Option(help="Five-field cron, in --zone.")] = None,
    interval_seconds: Annotated[
        int | None, typer.Option(min=1, help="Seconds between slots, instead of --cron.")
    ] = None,
    zone: Annotated[str, typer.Option(help="The IANA time zone of the cron.")] = "UTC",
    payload: Annotated[
        str | None, typer.Option(help="JSON object, every slot's job's payload.")
    ] = None,
    queue: Annotated[str | None, typer.Option(help="Default: the type's own queue.")] = None,
    priority: Annotated[int, typer.Option(min=0, max=9)] = 0,
    max_in_flight: Annotated[
        int | None, typer.Option(min=1, help="At most this many of its jobs not final at once.")
    ] = None,
    max_per_second: Annotated[
        float | None, typer.Option(min=0.001, help="At most this many jobs created a second.")
    ] = None,
    project: Annotated[str, typer.Option(help="The project.")] = "default",
    tenant: Tenant = "default",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count and list the slots; write nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Backfill SOURCE: one job per slot from --start to --end, each created once (a slot whose
    job exists already, from this backfill run before or an overlapping one, gets nothing)."""
    first, last = parse_time("--start", start), parse_time("--end", end)
    assert first is not None and last is not None
    spec = BackfillSpec(
        tenant_id=tenant,
        project_id=project,
        source=source,
        cadence=CadenceSpec(cron, interval_seconds, zone),
        start=first,
        end=last,
        job=JobTemplate(
            type=job_type,
            payload=parse_json("--payload", payload, object_only=True) or {},
            queue=queue,
            priority=priority,
        ),
        pacing=Pacing(max_in_flight, max_per_second),
    )
    with store(ctx) as engine:
        types = job_types(engine)
        with transaction(engine) as conn:
            created = service.create(
                conn,
                spec,
                dry_run=dry_run,
                created_by=cli_actor(),
                types=types,
                origin=cli_origin(),
            )
    if as_json:
        made = created.backfill
        _print_json(
            BackfillCreated(
                dry_run=dry_run,
                plan=PlanOut.of(created.plan),
                backfill=None if made is None else BackfillOut.of(made, created.progress),
            )
        )
        return
    if created.backfill is None:
        typer.echo(f"dry run, nothing written: {_plan_line(created.plan)}")
        for slot in created.plan.preview:
            typer.echo(f"  {when(slot.at)}  {'job ' + str(slot.job_id) if slot.job_id else 'new'}")
        return
    typer.echo(
        f"backfill {created.backfill.id} of {source}: {_plan_line(created.plan)};"
        " the leader creates the jobs (see `jobengine backfills get"
        f" {created.backfill.id}`)"
    )


@backfills_app.command("list")
def backfills_list(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(help="Only this source's backfills.")] = None,
    status: Annotated[str | None, typer.Option(help="creating, created or cancelled.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's backfills.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: JsonOption = False,
) -> None:
    """Backfills, newest first."""
    [wanted] = parse_choices("--status", [status], BackfillStatus) if status else [None]
    with store(ctx) as engine, transaction(engine) as conn:
        found = BackfillRepository(conn).page(
            tenant_id=tenant, source=source, status=wanted, before=None, limit=limit
        )
    if as_json:
        _print_json(BackfillList(items=[BackfillOut.of(b) for b in found], next_cursor=None))
        return
    if not found:
        typer.echo("no backfills match")
        return
    table = Table(box=box.SIMPLE)
    for column in ("id", "tenant", "source", "status", "range", "slots", "created", "cursor"):
        table.add_column(column)
    for b in found:
        table.add_row(
            str(b.id),
            b.tenant_id,
            b.source,
            b.status.value,
            f"{when(b.start)} .. {when(b.end)}",
            str(b.slots_total),
            str(b.slots_created),
            when(b.cursor),
        )
    table_console().print(table)


def _get(ctx: typer.Context, backfill_id: int) -> tuple[Backfill, Progress]:
    with store(ctx) as engine, transaction(engine) as conn:
        return service.get(conn, backfill_id, None)


@backfills_app.command("get")
def backfills_get(
    ctx: typer.Context,
    backfill_id: Annotated[int, typer.Argument(min=1, help="The backfill's id.")],
    as_json: JsonOption = False,
) -> None:
    """One backfill and its progress, read from its slots' jobs now."""
    backfill, progress = _get(ctx, backfill_id)
    if as_json:
        _print_json(BackfillOut.of(backfill, progress))
        return
    cadence = backfill.cadence
    every = cadence.cron or f"every {cadence.interval_seconds} s"
    typer.echo(
        f"backfill {backfill.id} of {backfill.source} ({backfill.tenant_id}/"
        f"{backfill.project_id}): {backfill.status.value}, {every} in {cadence.zone},"
        f" {when(backfill.start)} .. {when(backfill.end)}"
    )
    typer.echo(f"  {_progress_line(progress)}")
    if backfill.cursor is not None:
        typer.echo(f"  next slot to create: {when(backfill.cursor)}")
    if backfill.last_error:
        typer.echo(f"  last batch refused: {backfill.last_error}")


@backfills_app.command("cancel")
@files_refusals("backfill.cancel", "backfill_id")
def backfills_cancel(
    ctx: typer.Context,
    backfill_id: Annotated[int, typer.Argument(min=1, help="The backfill's id.")],
    cancel_queued: Annotated[
        bool, typer.Option("--cancel-queued", help="Also cancel its jobs not yet claimed.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Stop creating the backfill's jobs (cancelling twice is harmless)."""
    with store(ctx) as engine, transaction(engine) as conn:
        backfill, cancelled = service.cancel(
            conn,
            backfill_id,
            None,
            cancel_queued=cancel_queued,
            actor=cli_actor(),
            origin=cli_origin(),
        )
        progress = BackfillRepository(conn).progress(backfill)
    if as_json:
        _print_json(
            BackfillCancelled(
                backfill=BackfillOut.of(backfill, progress), cancelled_job_ids=cancelled
            )
        )
        return
    typer.echo(
        f"backfill {backfill.id} cancelled; {len(cancelled)} queued job(s) cancelled;"
        f" {_progress_line(progress)}"
    )


@backfills_app.command("sources")
def backfills_sources(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this source.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's sources.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Sources and their watermark: the latest slot such that it and every earlier slot
    completed, and the slot that holds it."""
    with store(ctx) as engine, transaction(engine) as conn:
        sources = BackfillRepository(conn).sources(tenant, name, 500)
    if as_json:
        _print_json(BackfillSourceList(items=[BackfillSourceOut.of(s) for s in sources]))
        return
    if not sources:
        typer.echo("no backfill sources match")
        return
    table = Table(box=box.SIMPLE)
    for column in ("tenant", "project", "source", "watermark", "held at", "held by", "last slot"):
        table.add_column(column)
    for s in sources:
        held_by = f"job {s.held_by_job} {s.held_by_status}" if s.held_by_job else "-"
        table.add_row(
            s.tenant_id,
            s.project_id,
            s.name,
            when(s.watermark),
            when(s.held_at),
            held_by,
            when(s.last_slot),
        )
    table_console().print(table)
