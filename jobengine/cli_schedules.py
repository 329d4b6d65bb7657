"""``jobengine schedules``: cadences that create a job or a run per slot, managed in Postgres.

The leading reaper fires each slot once; no command here fires one (create, pause and resume
set the next slot to the first after now). ``create --run-file`` reads the file ``jobengine
runs submit`` takes (its ``projectId``, if any, is the schedule's project). ``--json`` prints
the REST fields of ``/api/v1/schedules``. Exit codes as for every command: 0 done, 1 an error
(a refused field, an unknown schedule), 2 bad usage.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError as ModelInvalid
from rich import box
from rich.table import Table

from jobengine.api.schemas_schedules import ScheduledRunIn, ScheduleOut, SlotOut
from jobengine.cli_common import (
    JsonOption,
    cli_origin,
    emit_json,
    files_refusals,
    note,
    parse_json,
    parse_time,
    shorten,
    store,
    table_console,
    when,
)
from jobengine.errors import ValidationError
from jobengine.schedules import registry
from jobengine.schedules.definition import (
    DEFAULT_CATCH_UP_SECONDS,
    JobTemplate,
    RunTemplate,
    Schedule,
    ScheduleSpec,
    overlap_of,
)
from jobengine.schedules.slots import Cadence
from jobengine.store.database import transaction

schedules_app = typer.Typer(
    no_args_is_help=True,
    help="Schedules: a cron expression or an interval, in a time zone, creating a job or a run"
    " per slot.",
)

ScheduleId = Annotated[int, typer.Argument(help="The schedule's id (see `schedules list`).")]


def _view(schedule: Schedule) -> dict[str, Any]:
    return ScheduleOut.of(schedule).model_dump(mode="json", by_alias=True)


def _now() -> datetime:
    return datetime.now(UTC)


def _cadence(schedule: Schedule) -> str:
    cadence = schedule.spec.cadence
    every = cadence.cron if cadence.cron is not None else f"every {cadence.interval_seconds}s"
    return f"{every} ({cadence.zone})"


def _creates(schedule: Schedule) -> str:
    """What each slot creates: ``noop``, or ``run nightly-etl (4 jobs)``."""
    spec = schedule.spec
    if spec.run is not None:
        return f"run {spec.run.name} ({len(spec.run.jobs)} jobs)"
    assert spec.job is not None
    return spec.job.type


RUN_FILE_HINT = (
    'The file is the body of POST /api/v1/runs: {"name", "jobs": [{"key", "type", ...}],'
    ' "edges": [{"parent", "child"}]}, with or without its "projectId".'
)


def _read_run_file(source: str) -> tuple[RunTemplate, str | None]:
    """The run in ``source`` (a path, or ``-`` for stdin) and the project it names, if any;
    judged by the model REST judges a schedule's run with, refused naming the field."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise ValidationError(
            f"--run-file: cannot read {source}: {exc.strerror or exc}",
            hint="Give the path of a JSON file, or - to read the run from stdin.",
        ) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"--run-file {source}: not JSON: {exc.msg} at line {exc.lineno}", hint=RUN_FILE_HINT
        ) from None
    project = document.pop("projectId", None) if isinstance(document, dict) else None
    try:
        run = ScheduledRunIn.model_validate(document)
    except ModelInvalid as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the document"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ValidationError(
            f"--run-file {source}: {where}: {first['msg']}{more}", hint=RUN_FILE_HINT
        ) from None
    return run.to_template(), None if project is None else str(project)


def _project(option: str | None, in_file: str | None) -> str:
    if option is not None and in_file is not None and option != in_file:
        raise ValidationError(
            f"--project {option!r} and the run file's projectId {in_file!r} differ",
            hint="Leave one of them out, or make them the same.",
        )
    return option or in_file or "default"


def _print(schedule: Schedule, what: str) -> None:
    state = "paused" if schedule.spec.paused else f"next slot {when(schedule.next_slot_at)}"
    note(f"schedule {schedule.id} {schedule.spec.name!r} {what}: {_cadence(schedule)}, {state}")


@schedules_app.command("create")
@files_refusals("schedule.create")
def schedules_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Unique within the tenant's project.")],
    job_type: Annotated[
        str | None, typer.Option("--type", help="The job type each slot creates.")
    ] = None,
    run_file: Annotated[
        str | None,
        typer.Option(
            help="Instead of --type: a run per slot, the JSON file `runs submit` takes (- for"
            " stdin)."
        ),
    ] = None,
    cron: Annotated[
        str | None, typer.Option(help="5 fields, read in --zone, e.g. '30 2 * * *'.")
    ] = None,
    interval_seconds: Annotated[
        int | None, typer.Option(help="Instead of --cron: a fixed interval.")
    ] = None,
    zone: Annotated[str, typer.Option(help="An IANA time zone, e.g. Europe/Berlin.")] = "UTC",
    payload: Annotated[str | None, typer.Option(help="The job's payload, as JSON.")] = None,
    tenant: Annotated[str, typer.Option(help="The tenant the jobs belong to.")] = "default",
    project: Annotated[
        str | None,
        typer.Option(help="The project the jobs belong to (default: the run file's, or default)."),
    ] = None,
    queue: Annotated[str, typer.Option(help="The jobs' queue.")] = "default",
    priority: Annotated[int, typer.Option(help="0 (lowest) to 9.")] = 0,
    start_at: Annotated[str | None, typer.Option(help="No slot before (ISO 8601).")] = None,
    end_at: Annotated[str | None, typer.Option(help="No slot at or after (ISO 8601).")] = None,
    jitter_seconds: Annotated[int, typer.Option(help="Delay each slot by up to this.")] = 0,
    overlap: Annotated[
        str, typer.Option(help="While the last slot's job runs: skip, buffer_one or allow.")
    ] = "skip",
    catch_up_seconds: Annotated[
        int, typer.Option(help="How late a slot may still fire; later ones are missed.")
    ] = DEFAULT_CATCH_UP_SECONDS,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a schedule; nothing fires now, its first slot is the first after now."""
    run, in_file = (None, None) if run_file is None else _read_run_file(run_file)
    job = None
    if job_type is not None:
        job = JobTemplate(
            type=job_type,
            payload=parse_json("--payload", payload) or {},
            queue=queue,
            priority=priority,
        )
    spec = ScheduleSpec(
        name=name,
        cadence=Cadence.parse(cron=cron, interval_seconds=interval_seconds, zone=zone),
        job=job,
        run=run,
        tenant_id=tenant,
        project_id=_project(project, in_file),
        start_at=parse_time("--start-at", start_at),
        end_at=parse_time("--end-at", end_at),
        jitter_seconds=jitter_seconds,
        overlap=overlap_of(overlap),
        catch_up_seconds=catch_up_seconds,
        paused=paused,
    )
    with store(ctx) as engine, transaction(engine) as conn:
        schedule = registry.create(conn, spec, now=_now(), origin=cli_origin())
    if as_json:
        emit_json(_view(schedule))
        return
    _print(schedule, "created")


@schedules_app.command("list")
def schedules_list(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's schedules.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """Schedules by id, with their next slot and how many slots fired and were skipped."""
    with store(ctx) as engine, transaction(engine) as conn:
        found = registry.list_schedules(conn, tenant_id=tenant, limit=limit)
    if as_json:
        emit_json({"items": [_view(s) for s in found], "nextCursor": None})
        return
    table = Table(box=box.SIMPLE)
    for column in ("id", "name", "tenant", "cadence", "creates", "next slot", "fired", "skipped"):
        table.add_column(column)
    for s in found:
        table.add_row(
            str(s.id),
            s.spec.name,
            s.spec.tenant_id,
            _cadence(s),
            _creates(s),
            "paused" if s.spec.paused else when(s.next_slot_at),
            str(s.fired_count),
            str(s.skipped_count),
        )
    table_console().print(table)


@schedules_app.command("get")
def schedules_get(
    ctx: typer.Context,
    schedule_id: ScheduleId,
    slots: Annotated[int, typer.Option(help="Show this many of the latest slots.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """One schedule and what its latest slots became (fired, skipped and why, buffered)."""
    with store(ctx) as engine, transaction(engine) as conn:
        schedule = registry.get(conn, schedule_id)
        decided = registry.slots(
            conn, schedule_id, before=datetime.max.replace(tzinfo=UTC), limit=slots
        )
    if as_json:
        views = [SlotOut.of(d).model_dump(mode="json", by_alias=True) for d in decided]
        emit_json(_view(schedule) | {"slots": views})
        return
    _print(schedule, "is")
    spec = schedule.spec
    note(
        f"  {_creates(schedule)} in {spec.tenant_id}/{spec.project_id}, overlap {spec.overlap},"
        f" catch-up {spec.catch_up_seconds}s, jitter {spec.jitter_seconds}s;"
        f" fired {schedule.fired_count}, skipped {schedule.skipped_count}"
    )
    table = Table(box=box.SIMPLE)
    for column in ("slot", "outcome", "created", "reason"):
        table.add_column(column)
    for d in decided:
        created = f"job {d.job_id}" if d.job_id else f"run {d.run_id}" if d.run_id else "-"
        table.add_row(when(d.slot_at), d.outcome.value, created, shorten(d.reason, 60))
    table_console().print(table)


def _set_paused(ctx: typer.Context, schedule_id: int, paused: bool, as_json: bool) -> None:
    with store(ctx) as engine, transaction(engine) as conn:
        schedule = registry.set_paused(conn, schedule_id, paused, now=_now(), origin=cli_origin())
    if as_json:
        emit_json(_view(schedule))
        return
    _print(schedule, "paused" if paused else "resumed")


@schedules_app.command("pause")
@files_refusals("schedule.pause", "schedule_id")
def schedules_pause(
    ctx: typer.Context, schedule_id: ScheduleId, as_json: JsonOption = False
) -> None:
    """No slot is decided while paused; jobs already created run as usual."""
    _set_paused(ctx, schedule_id, True, as_json)


@schedules_app.command("resume")
@files_refusals("schedule.resume", "schedule_id")
def schedules_resume(
    ctx: typer.Context, schedule_id: ScheduleId, as_json: JsonOption = False
) -> None:
    """From the first slot after now: the slots that passed while paused are not fired."""
    _set_paused(ctx, schedule_id, False, as_json)


@schedules_app.command("delete")
@files_refusals("schedule.delete", "schedule_id")
def schedules_delete(
    ctx: typer.Context, schedule_id: ScheduleId, as_json: JsonOption = False
) -> None:
    """Delete a schedule and its slot records; the jobs it created stay."""
    with store(ctx) as engine, transaction(engine) as conn:
        registry.delete(conn, schedule_id, origin=cli_origin())
    if as_json:
        emit_json({"id": schedule_id, "deleted": True})
        return
    note(f"schedule {schedule_id} deleted; the jobs it created stay")
