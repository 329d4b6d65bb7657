"""``jobengine jobs``: submit, list, retry and trace jobs, list and fetch their artifacts (``get``,
``cancel`` and ``stuck`` are registered on the same group in ``cli.py``).

Exit codes as for every command: 0 done or already done, 1 an error, 2 bad usage.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from jobengine.api.schemas import HistoryItem
from jobengine.api.schemas_artifacts import ArtifactOut
from jobengine.artifacts.errors import ArtifactBytesMismatch, ArtifactNotFound
from jobengine.artifacts.storage import storage_from_url
from jobengine.cli_common import (
    CursorOption,
    JsonOption,
    broker_publisher,
    cli_actor,
    cursor_after,
    cursor_out,
    dispatch_note,
    emit_json,
    job_json,
    job_types,
    note,
    parse_choices,
    parse_json,
    parse_time,
    rest_fields,
    settings_of,
    shorten,
    store,
    table_console,
    when,
)
from jobengine.cli_dlq import FreshBudgetOption, PatchOption, replay_one, replay_options
from jobengine.dead_letters import DeadLetterNotFound, DeadLetters
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.errors import ValidationError
from jobengine.producer import submit_jobs
from jobengine.store.artifacts_repository import ArtifactsRepository
from jobengine.store.database import transaction
from jobengine.store.history_repository import JobHistoryRepository
from jobengine.store.jobs_repository import JobFilter, JobsRepository

jobs_app = typer.Typer(no_args_is_help=True, help="Inspect and steer jobs.")


@jobs_app.command("submit")
def jobs_submit(
    ctx: typer.Context,
    job_type: Annotated[str, typer.Argument(metavar="TYPE", help="A registered job type.")],
    payload: Annotated[str | None, typer.Option(help="The job's input, as JSON.")] = None,
    tenant: Annotated[str, typer.Option(help="Tenant the job belongs to.")] = "default",
    project: Annotated[str, typer.Option(help="Project within the tenant.")] = "default",
    queue: Annotated[str, typer.Option(help="Queue; default: the type's own.")] = "default",
    priority: Annotated[int, typer.Option(help="0 (lowest) to 9 (highest).")] = 0,
    not_before: Annotated[
        str | None, typer.Option(help="Start no earlier (ISO 8601 with offset).")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submitting again with the same key returns the same job.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Submit one job, then publish it to the broker (or leave that to the leader)."""
    settings = settings_of(ctx)
    new = NewJob(
        type=job_type,
        payload=parse_json("--payload", payload) if payload is not None else {},
        tenant_id=tenant,
        project_id=project,
        queue=queue,
        priority=priority,
        not_before=parse_time("--not-before", not_before),
        idempotency_key=idempotency_key,
    )
    with store(ctx) as engine:
        existed = False
        if idempotency_key is not None:
            with transaction(engine) as conn:
                found = JobsRepository(conn).find_by_idempotency_key(tenant, idempotency_key)
            existed = found is not None
        publisher = broker_publisher(settings)
        [job] = submit_jobs(
            engine,
            publisher or _NOWHERE,
            [new],
            max_payload_bytes=settings.max_payload_bytes,
            types=job_types(engine),
            actor=cli_actor(),
        )
    published = publisher is not None and job.id in publisher.sent
    if as_json:
        emit_json({"job": job_json(job), "created": not existed, "published": published})
        return
    if existed:
        typer.echo(
            f"job {job.id} ({job.type}) already exists under idempotency key"
            f" {idempotency_key!r}; nothing submitted. It is {job.status.value}"
        )
        return
    typer.echo(f"submitted job {job.id} ({job.type}): {job.status.value}")
    if job.status is JobStatus.PENDING:
        typer.echo(f"job {job.id} waits until {when(job.not_before)}; the leader schedules it")
    elif published:
        typer.echo(f"job {job.id} published to the broker")
    else:
        typer.echo(dispatch_note(publisher, f"job {job.id}"))


class _Nowhere:
    """Where ``submit_jobs`` publishes when no broker is at hand: it refuses, so the job's
    dispatch mark is cleared and the leader publishes it."""

    def publish(self, ref: object, countdown: float | None = None) -> None:
        raise ConnectionError("no broker")

    def publish_chunk(self, refs: object) -> None:
        raise ConnectionError("no broker")


_NOWHERE = _Nowhere()


@jobs_app.command("list")
def jobs_list(
    ctx: typer.Context,
    statuses: Annotated[
        list[str] | None,
        typer.Option("--status", help="pending, scheduled, claimed, running, ... (repeatable)."),
    ] = None,
    types: Annotated[
        list[str] | None, typer.Option("--type", help="Job type (repeatable).")
    ] = None,
    queues: Annotated[list[str] | None, typer.Option("--queue", help="Queue (repeatable).")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Created at or after (ISO 8601 with offset).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Created before (ISO 8601 with offset).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Jobs per page.")] = 50,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Jobs in id order, a page at a time."""
    flt = JobFilter(
        tenant_id=tenant,
        statuses=tuple(parse_choices("--status", statuses or (), JobStatus)),
        types=tuple(types or ()),
        queues=tuple(queues or ()),
        created_from=parse_time("--since", since),
        created_to=parse_time("--until", until),
    )
    with store(ctx) as engine, transaction(engine) as conn:
        page = JobsRepository(conn).list(flt, after_id=cursor_after(cursor), limit=limit)
    if as_json:
        items = [job_json(j) for j in page.jobs]
        emit_json({"items": items, "nextCursor": cursor_out(page.next_cursor)})
        return
    if not page.jobs:
        typer.echo("no jobs match")
        return
    table = Table(box=box.SIMPLE_HEAD, title=f"{len(page.jobs)} job(s)", title_justify="left")
    for name in ("id", "type", "status", "queue", "tenant", "attempt", "priority", "created"):
        table.add_column(name, overflow="fold")
    for j in page.jobs:
        table.add_row(
            str(j.id),
            j.type,
            j.status.value,
            j.queue,
            j.tenant_id,
            str(j.attempt),
            str(j.priority),
            when(j.created_at),
        )
    table_console().print(table)
    if page.next_cursor is not None:
        typer.echo(f"more: rerun with --cursor {cursor_out(page.next_cursor)}")


@jobs_app.command("retry")
def jobs_retry(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="A job that failed for good.")],
    reason: Annotated[str | None, typer.Option(help="Recorded in the job's history.")] = None,
    patch: PatchOption = None,
    fresh_budget: FreshBudgetOption = False,
    as_json: JsonOption = False,
) -> None:
    """Replay a failed job's dead letter; safe to run twice."""

    def dead_letter_of(service: DeadLetters) -> int:
        try:
            return service.id_for_job(job_id)
        except DeadLetterNotFound:
            with transaction(service.engine) as conn:
                status = JobsRepository(conn).get(job_id).status
            raise ValidationError(
                f"job {job_id} is {status.value}, not failed; there is nothing to retry",
                hint="Only a job that failed for good can be retried; see"
                f" `jobengine jobs history {job_id}`.",
            ) from None

    replay_one(ctx, dead_letter_of, replay_options(reason, patch, fresh_budget), as_json=as_json)


@jobs_app.command("history")
def jobs_history(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The job's id.")],
    as_json: JsonOption = False,
) -> None:
    """A job's timeline: every transition, who made it, when and why."""
    with store(ctx) as engine, transaction(engine) as conn:
        job = JobsRepository(conn).get(job_id)
        steps = JobHistoryRepository(conn).for_job(job_id)
    if as_json:
        items = [rest_fields(HistoryItem.of(step)) for step in steps]
        emit_json({"jobId": job.id, "status": job.status, "items": items})
        return
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"job {job.id} ({job.type}): {job.status.value}",
        title_justify="left",
    )
    for name in ("attempt", "from → to", "at", "actor", "reason", "error"):
        table.add_column(name, overflow="fold")
    for step in steps:
        error = step.details.get("error") if step.to_status is JobStatus.FAILED else None
        table.add_row(
            str(step.attempt),
            f"{step.from_status.value if step.from_status else '-'} → {step.to_status.value}",
            when(step.at),
            step.actor,
            step.reason or "-",
            shorten(error.get("message"), 60) if isinstance(error, dict) else "",
        )
    table_console().print(table)


# ---- artifacts (issue 13) ----


@jobs_app.command("artifacts")
def jobs_artifacts(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The job's id.")],
    as_json: JsonOption = False,
) -> None:
    """The files and blobs the job's handler attached, by name."""
    with store(ctx) as engine, transaction(engine) as conn:
        JobsRepository(conn).get(job_id)
        found = ArtifactsRepository(conn).of_job(job_id)
    if as_json:
        emit_json({"items": [rest_fields(ArtifactOut.of(a)) for a in found]})
        return
    if not found:
        typer.echo(f"job {job_id} has no artifacts")
        return
    table = Table(box=box.SIMPLE_HEAD, title=f"job {job_id}: {len(found)} artifact(s)")
    for name in ("name", "content type", "bytes", "sha256", "attached"):
        table.add_column(name, overflow="fold")
    for a in found:
        table.add_row(a.name, a.content_type, str(a.size_bytes), a.sha256, when(a.created_at))
    table_console().print(table)


@jobs_app.command("artifact")
def jobs_artifact(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The job's id.")],
    name: Annotated[str, typer.Argument(help="The artifact's name (see `jobs artifacts`).")],
    output: Annotated[
        str | None,
        typer.Option("-o", "--output", help="Write it here ('-': stdout); default ./NAME."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite the output file if it exists.")] = False,
) -> None:
    """Fetch one artifact's bytes from the artifacts storage."""
    target = None if output == "-" else Path(output or name)
    if target is not None and target.exists() and not force:
        raise ValidationError(
            f"{target} exists; nothing was written",
            hint="Give another path with -o, or --force to overwrite it.",
        )
    with store(ctx) as engine, transaction(engine) as conn:
        JobsRepository(conn).get(job_id)
        artifact = ArtifactsRepository(conn).get(job_id, name)
    if artifact is None:
        raise ArtifactNotFound(job_id, name)
    settings = settings_of(ctx)
    chunks = storage_from_url(settings.artifacts_url, settings.data_dir).open(artifact.storage_key)
    if target is None:
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    partial = target.with_name(f"{target.name}.partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != artifact.sha256:
            raise ArtifactBytesMismatch(
                f"the stored bytes of {name!r} have sha256 {digest.hexdigest()}, not the "
                f"{artifact.sha256} recorded when it was attached; nothing was written"
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    note(f"wrote {artifact.size_bytes} bytes to {target} (sha256 {artifact.sha256})")
