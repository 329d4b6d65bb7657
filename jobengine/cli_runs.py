"""``jobengine runs``: submit a workflow from a JSON file, list runs, draw one as a tree, cancel.

The file is the body ``POST /api/v1/runs`` takes (``name``, ``projectId``, ``jobs``, ``edges``),
judged by the same model, and ``--json`` prints what REST answers, field for field, so a run
reads the same from the CLI, the client and the API.

A run is a DAG, not a tree: a job with several parents is drawn in full under the first of
them (in id order) and as ``<key> (see above)`` under the others, so every job appears once
with its state and the drawing stays as large as the graph.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError as ModelInvalid
from rich import box
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from jobengine.api.cursors import RUN_CURSOR, decode_cursor, encode_cursor
from jobengine.api.schemas_runs import (
    RunCancelled,
    RunCreate,
    RunDetail,
    RunJobOut,
    RunList,
    RunOut,
)
from jobengine.cli_common import (
    BrokerRevoker,
    JsonOption,
    broker_publisher,
    cli_actor,
    cli_origin,
    dispatch_note,
    files_refusals,
    job_types,
    parse_choices,
    settings_of,
    store,
    table_console,
)
from jobengine.dispatch import publish_jobs
from jobengine.domain.status import JobStatus, RunStatus
from jobengine.errors import ValidationError
from jobengine.producer import dispatch_ref
from jobengine.run_cancellation import cancel_run
from jobengine.runs import service
from jobengine.store.database import transaction
from jobengine.submission import validate

runs_app = typer.Typer(no_args_is_help=True, help="Submit, inspect and cancel runs (workflows).")

STATE_STYLE: dict[JobStatus, str] = {
    JobStatus.PENDING: "dim",
    JobStatus.SCHEDULED: "cyan",
    JobStatus.CLAIMED: "blue",
    JobStatus.RUNNING: "yellow",
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "bold red",
    JobStatus.CANCELLED: "magenta",
}
RUN_STYLE: dict[RunStatus, str] = {
    RunStatus.RUNNING: "yellow",
    RunStatus.COMPLETED: "green",
    RunStatus.FAILED: "bold red",
    RunStatus.CANCELLED: "magenta",
}


def _label(job: RunJobOut) -> Text:
    label = Text(job.key, style="bold")
    label.append(f"  {job.type}  ")
    label.append(job.status.value, style=STATE_STYLE[job.status])
    label.append(f"  attempt {job.attempt}", style="dim")
    if job.trigger_rule.value != "all_success":
        label.append(f"  [{job.trigger_rule.value}]", style="dim")
    return label


def run_tree(detail: RunDetail) -> Tree:
    """The run as a tree: roots in id order, each job's children under it; a job already
    drawn is drawn again only as a reference. Built without recursion, so a chain of
    thousands of jobs draws like a short one."""
    title = Text(f"run {detail.id} {detail.name}: ", style="bold")
    title.append(detail.status.value, style=RUN_STYLE[detail.status])
    title.append(
        f"  ({detail.jobs_completed}/{detail.jobs_total} completed, {detail.jobs_failed} failed,"
        f" {detail.jobs_cancelled} cancelled)",
        style="dim",
    )
    tree = Tree(title)
    by_id = {job.id: job for job in detail.jobs}
    children: dict[int, list[int]] = defaultdict(list)
    has_parent: set[int] = set()
    for edge in detail.edges:
        children[edge.parent_id].append(edge.child_id)
        has_parent.add(edge.child_id)
    roots = sorted(job.id for job in detail.jobs if job.id not in has_parent)
    drawn: set[int] = set()
    stack: list[tuple[Tree, int]] = [(tree, root) for root in reversed(roots)]
    while stack:
        parent_node, job_id = stack.pop()
        job = by_id[job_id]
        if job_id in drawn:
            parent_node.add(Text(f"{job.key} (see above)", style="dim italic"))
            continue
        drawn.add(job_id)
        node = parent_node.add(_label(job))
        stack.extend((node, child) for child in sorted(children[job_id], reverse=True))
    return tree


def _read_spec_file(source: str) -> RunCreate:
    """The run in ``source`` (a path, or ``-`` for stdin), refused with the field to fix."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise ValidationError(
            f"cannot read {source}: {exc.strerror or exc}",
            hint="Give the path of a JSON file, or - to read the run from stdin.",
        ) from None
    try:
        return RunCreate.model_validate_json(text)
    except ModelInvalid as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the document"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ValidationError(
            f"{source}: {where}: {first['msg']}{more}",
            hint='The file is the body of POST /api/v1/runs: {"name", "projectId", "jobs": '
            '[{"key", "type", ...}], "edges": [{"parent", "child"}]}.',
        ) from None


def _print_json(model: RunOut | RunList) -> None:
    typer.echo(model.model_dump_json(by_alias=True))


@runs_app.command("submit")
def runs_submit(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="FILE.json|-", help="The run, as JSON.")],
    tenant: Annotated[str, typer.Option(help="Tenant the run belongs to.")] = "default",
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submitting again with the same key returns the same run.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a run in one transaction, then publish its roots (or leave that to the leader).

    A cycle, an edge naming a key outside the run, a duplicate key or a job its type refuses
    is an error naming it, and nothing is written."""
    body = _read_spec_file(source)
    settings = settings_of(ctx)
    spec = body.to_spec(tenant, idempotency_key)
    publisher = broker_publisher(settings)
    with store(ctx) as engine:
        types = job_types(engine)
        with transaction(engine) as conn:
            run, jobs, created = service.submit_run_created(
                conn,
                spec,
                actor=cli_actor(),
                dispatching=publisher is not None,
                validate_job=lambda new: validate(
                    new, max_payload_bytes=settings.max_payload_bytes, types=types
                ),
            )
            graph = service.run_graph(conn, run.id)
        roots = [dispatch_ref(job) for job in jobs if job.status is JobStatus.SCHEDULED]
        if created and publisher is not None:
            publish_jobs(engine, publisher, roots, premarked=True)
    detail = RunDetail.of_graph(graph, show_traceback=True)
    if as_json:
        _print_json(detail)
        return
    if not created:
        typer.echo(
            f"run {run.id} ({run.name}) already exists under idempotency key"
            f" {idempotency_key!r}; nothing submitted. It is {run.status.value}"
        )
        return
    typer.echo(
        f"submitted run {run.id} ({run.name}): {len(detail.jobs)} job(s),"
        f" {len(roots)} scheduled at once, the rest wait for their parents"
    )
    unsent = [ref.id for ref in roots if publisher is None or ref.id not in publisher.sent]
    if unsent:
        typer.echo(dispatch_note(publisher, f"{len(unsent)} job(s) of run {run.id}"))


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help="running, completed, failed or cancelled.")
    ] = None,
    project: Annotated[str | None, typer.Option(help="Only this project's runs.")] = None,
    name: Annotated[str | None, typer.Option(help="Only runs of this exact name.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's runs.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Runs per page.")] = 50,
    cursor: Annotated[
        str | None, typer.Option(help="The nextCursor of the previous page, as REST gives it.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Runs in id order, a page at a time."""
    [wanted] = parse_choices("--status", [status], RunStatus) if status else [None]
    with store(ctx) as engine, transaction(engine) as conn:
        runs = service.list_runs(
            conn,
            tenant,
            status=wanted,
            project_id=project,
            name=name,
            after_id=decode_cursor(cursor, RUN_CURSOR) if cursor else 0,
            limit=limit + 1,
        )
    page, more = runs[:limit], len(runs) > limit
    next_cursor = encode_cursor(page[-1].id, RUN_CURSOR) if more else None
    if as_json:
        _print_json(RunList(items=[RunOut.of(run) for run in page], next_cursor=next_cursor))
        return
    if not page:
        typer.echo("no runs match")
        return
    table = Table(box=box.SIMPLE_HEAD, title=f"{len(page)} run(s)", title_justify="left")
    for column in ("id", "name", "status", "project", "tenant", "jobs", "done", "failed"):
        table.add_column(column, overflow="fold")
    for run in page:
        table.add_row(
            str(run.id),
            run.name,
            Text(run.status.value, style=RUN_STYLE[run.status]),
            run.project_id,
            run.tenant_id,
            str(run.jobs_total),
            str(run.jobs_completed),
            str(run.jobs_failed),
        )
    table_console().print(table)
    if next_cursor is not None:
        typer.echo(f"more: rerun with --cursor {next_cursor}")


@runs_app.command("get")
def runs_get(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(help="The run's id.")],
    as_json: JsonOption = False,
) -> None:
    """Show a run as a tree of its jobs: key, type, state and attempt of each."""
    with store(ctx) as engine, transaction(engine) as conn:
        graph = service.run_graph(conn, run_id)
    detail = RunDetail.of_graph(graph, show_traceback=True)
    if as_json:
        _print_json(detail)
        return
    table_console().print(run_tree(detail))


@runs_app.command("cancel")
@files_refusals("run.cancel", "run_id")
def runs_cancel(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(help="The run's id.")],
    reason: Annotated[str, typer.Option(help="Recorded in each job's history.")] = (
        "run cancelled by operator"
    ),
    as_json: JsonOption = False,
) -> None:
    """Cancel every job of the run that is not final; running ones are revoked. Safe twice."""
    with store(ctx) as engine:
        cancelled, revoked = cancel_run(
            engine,
            run_id,
            tenant_id=None,
            actor=cli_actor(),
            reason=reason,
            revoker=BrokerRevoker(settings_of(ctx)),
            origin=cli_origin(),
        )
        with transaction(engine) as conn:
            graph = service.run_graph(conn, run_id)
    detail = RunDetail.of_graph(graph, show_traceback=True)
    if as_json:
        _print_json(
            RunCancelled(**detail.model_dump(), cancelled_job_ids=[job.id for job in cancelled])
        )
        return
    if not cancelled:
        typer.echo(f"run {run_id} was already cancelled; nothing changed")
        return
    typer.echo(
        f"run {run_id} cancelled: {len(cancelled)} job(s) cancelled,"
        f" {len(revoked)} running task(s) revoked"
    )
