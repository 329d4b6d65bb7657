"""The ``jobengine`` command line.

Operators read its errors in terminals and in CI logs, so every failure is one line on stderr
(``error: <message> (<hint>)``) unless ``--debug`` asks for the traceback. Scripts branch on
the exit code, so it means the same for every command:

- 0: done, or already done (a replayed entry replayed again, a discarded one discarded again);
  the output says "nothing done" then, so running a command twice is safe.
- 1: an error: unknown id, bad filter or value, refused replay, declined confirmation.
- 2: bad usage, Typer's own (unknown option, a value of the wrong type).

``--json`` prints one JSON document on stdout; notes, prompts and progress go to stderr.
Commands that write history (replay, discard, retry, cancel) record ``cli:<os user>@<hostname>``
as the actor. The ``jobs`` and ``dlq`` groups live in ``cli_jobs`` and ``cli_dlq``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from config.logging import configure_logging
from jobengine.api.routes_workers import TypeWithoutWorkerOut
from jobengine.audit import record
from jobengine.cli_audit import audit_app
from jobengine.cli_audit_export import register as register_audit_exports
from jobengine.cli_backfills import backfills_app
from jobengine.cli_common import (
    BrokerRevoker,
    JsonOption,
    camel,
    cli_actor,
    cli_origin,
    emit_json,
    files_refusals,
    job_dict,
    job_json,
    load_settings,
    note,
    one_line,
    rest_fields,
    settings_of,
    store,
)
from jobengine.cli_db import db_prune
from jobengine.cli_dlq import dlq_app
from jobengine.cli_health import health_app
from jobengine.cli_jobs import jobs_app
from jobengine.cli_keys import keys_app
from jobengine.cli_limits import limits_app
from jobengine.cli_quotas import quotas_app
from jobengine.cli_runs import runs_app
from jobengine.cli_schedules import schedules_app
from jobengine.cli_types import types_app
from jobengine.cli_workers import workers_app
from jobengine.domain.status import FINAL_STATES, JobStatus
from jobengine.domain.transitions import TRANSITIONS
from jobengine.errors import JobEngineError
from jobengine.services import (
    current_database_revision,
    database,
    downgrade_database,
    head_revision,
    masked_url,
    upgrade_database,
)
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import JobsRepository, QueueLimitRepository
from jobengine.workers_registry import WorkersRegistry

EXIT_ERROR = 1


def format_error(exc: BaseException) -> str:
    if isinstance(exc, JobEngineError):
        message, hint = exc.message, exc.hint
    else:
        message = f"unexpected {type(exc).__name__}: {exc}"
        hint = "rerun with --debug for the traceback"
    line = f"error: {one_line(message)}"
    return f"{line} ({one_line(hint)})" if hint else line


class _OneLineErrors(TyperGroup):
    """The top-level group: it wraps every sub-command, so one place turns errors into lines."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # usage errors (exit code 2), aborted prompts and explicit exits stay Typer's
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            typer.echo(format_error(exc), err=True)
            raise typer.Exit(EXIT_ERROR) from None


app = typer.Typer(
    cls=_OneLineErrors,
    no_args_is_help=True,
    help="jobengine: operate the job engine.",
    pretty_exceptions_show_locals=False,  # locals hold database URLs with passwords
    add_completion=False,
)
db_app = typer.Typer(no_args_is_help=True, help="Migrate the job store's schema; prune it.")
app.add_typer(db_app, name="db")
db_app.command("prune")(db_prune)
app.add_typer(jobs_app, name="jobs")
app.add_typer(runs_app, name="runs")
app.add_typer(dlq_app, name="dlq")
queues_app = typer.Typer(no_args_is_help=True, help="Per-queue concurrency limits.")
app.add_typer(queues_app, name="queues")
app.add_typer(keys_app, name="keys")
app.add_typer(workers_app, name="workers")
app.add_typer(types_app, name="types")
app.add_typer(limits_app, name="limits")
app.add_typer(quotas_app, name="quotas")
app.add_typer(health_app, name="health")
app.add_typer(backfills_app, name="backfills")
app.add_typer(schedules_app, name="schedules")
app.add_typer(audit_app, name="audit")
register_audit_exports(audit_app)  # audit export, audit verify


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    # Read per invocation, not through the cached get_settings(): a test runner may invoke
    # the app many times in one process with different environments.
    settings = load_settings()
    ctx.obj = settings
    configure_logging(settings.log_level, settings.log_json)  # to stderr; stdout is for results
    logging.getLogger("alembic").setLevel(logging.WARNING)  # commands report migrations themselves


def _describe(revision: str | None) -> str:
    if revision is None:
        return "none"
    return f"{revision} (head)" if revision == head_revision() else revision


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply migrations up to REVISION (default: head)."""
    with database(settings_of(ctx)) as (url, _server):
        outcome = upgrade_database(url, revision)
    typer.echo(
        f"upgraded {masked_url(url)}: {_describe(outcome.before)} -> {_describe(outcome.after)}"
    )


@db_app.command("downgrade")
def db_downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "base",
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask; downgrading drops data.")
    ] = False,
) -> None:
    """Revert migrations down to REVISION (default: base, which drops every table)."""
    with database(settings_of(ctx)) as (url, _server):
        if not yes:
            typer.confirm(
                f"Downgrade {masked_url(url)} to {revision}? Tables and the jobs in them "
                "will be dropped",
                abort=True,
            )
        outcome = downgrade_database(url, revision)
    typer.echo(
        f"downgraded {masked_url(url)}: {_describe(outcome.before)} -> {_describe(outcome.after)}"
    )


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Print the schema revision the database is at ("none" before the first upgrade)."""
    with database(settings_of(ctx)) as (url, _server):
        revision = current_database_revision(url)
    note(f"database: {masked_url(url)}")
    typer.echo(_describe(revision))


@app.command("states")
def states() -> None:
    """Print the transition table: every move a job can make, and when it makes it."""
    table = Table(title="job state transitions", box=box.SIMPLE_HEAD)
    table.add_column("from", no_wrap=True)
    table.add_column("to", no_wrap=True)
    table.add_column("when")
    for t in TRANSITIONS:
        table.add_row(t.source.value, t.target.value, t.when)
    console = Console()
    console.print(table)
    final = ", ".join(s.value for s in JobStatus if s in FINAL_STATES)
    console.print(
        f"final states: {final}; a failed job moves on only when retried or replayed.",
        highlight=False,
    )


@app.command("dev")
def dev(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Run one demo round, print its timelines, exit.")
    ] = False,
) -> None:
    """Run the whole engine on private servers: workers, reaper, Flower and a demo producer."""
    from jobengine import dev as dev_mode  # keeps `jobengine states` from importing the fleet

    code = dev_mode.run(settings_of(ctx), once=once)
    if code:
        raise typer.Exit(code)


@app.command("api")
def api(ctx: typer.Context) -> None:
    """Serve the REST/SSE API on JOBENGINE_API_HOST:JOBENGINE_API_PORT (127.0.0.1:8080).

    With a configured database it first waits for it to be usable (one line saying what is
    wrong while it is not) and reports the connection budget; its connections are named
    ``jobengine-api`` and kept alive, so a dead server is noticed in seconds.
    """
    from jobengine.api.app import serve_configured  # keeps other commands from FastAPI

    serve_configured(settings_of(ctx))


@app.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Run a Celery worker of the fleet; extra arguments go to `celery worker` (e.g. -c 4).

    Task events (for Flower) follow JOBENGINE_TASK_EVENTS, or pass -E."""
    import os
    import sys

    from config.settings import get_settings

    events = ["-E"] if get_settings().task_events else []
    argv = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", *events, *ctx.args]
    os.execv(sys.executable, argv)


@app.command("reaper")
def reaper(
    name: Annotated[str | None, typer.Option(help="Name in leases and history.")] = None,
) -> None:
    """Run a reaper; of all reapers running, one leads (a lease row in Postgres)."""
    from jobengine.fleet import run_reaper

    run_reaper(name=name)


@app.command("flower", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def flower(ctx: typer.Context) -> None:
    """Run Flower on the fleet's broker, its revokes filed as `flower:<user>`; extra
    arguments go to `celery flower`."""
    import os
    import sys

    argv = [sys.executable, "-m", "jobengine.flower_app", *ctx.args]
    os.execv(sys.executable, argv)


@jobs_app.command("get")
def jobs_get(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The job's id.")],
    as_json: JsonOption = False,
) -> None:
    """Show one job: state, attempt, progress, result, last error, timestamps."""
    with store(ctx) as engine, transaction(engine) as conn:
        job = JobsRepository(conn).get(job_id)
    if as_json:
        emit_json(job_json(job))
        return
    data = job_dict(job)
    table = Table(box=box.SIMPLE_HEAD, show_header=False)
    for key in (
        "id",
        "type",
        "status",
        "attempt",
        "queue",
        "priority",
        "tenant_id",
        "progress",
        "result",
        "last_error",
        "lease_owner",
        "created_at",
        "started_at",
        "completed_at",
    ):
        value = data[key]
        table.add_row(key, value if isinstance(value, str) else json.dumps(value))
    Console().print(table)


@jobs_app.command("cancel")
@files_refusals("job.cancel", "job_id")
def jobs_cancel(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The job's id.")],
    reason: Annotated[
        str, typer.Option(help="Recorded in the job's history.")
    ] = "cancelled by operator",
    as_json: JsonOption = False,
) -> None:
    """Cancel a job; a running one's task is revoked with termination. Safe to run twice."""
    from jobengine.cancellation import cancel_job

    revoker = BrokerRevoker(settings_of(ctx))
    with store(ctx) as engine:
        outcome = cancel_job(
            engine,
            job_id,
            actor=cli_actor(),
            reason=reason,
            revoker=revoker,
            origin=cli_origin(),
        )
    if as_json:
        emit_json(
            {
                "job": job_json(outcome.job),
                "changed": outcome.changed,
                "revokedTask": outcome.revoked_task,
            }
        )
        return
    if not outcome.changed:
        typer.echo(f"job {job_id} was already cancelled; nothing changed")
    elif outcome.revoked_task:
        typer.echo(f"job {job_id} cancelled; its task {outcome.revoked_task} was revoked")
    else:
        typer.echo(f"job {job_id} cancelled; its message, when it arrives, will run nothing")


@jobs_app.command("stuck")
def jobs_stuck(
    ctx: typer.Context,
    scheduled_after: Annotated[
        float, typer.Option(help="Seconds a due scheduled job may wait for its message.")
    ] = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Jobs claimed or running with a missed heartbeat, scheduled with no message taken, and
    types whose due jobs no live worker handles (with how long the oldest has waited)."""
    settings = settings_of(ctx)
    with store(ctx) as engine:
        with transaction(engine) as conn:
            stuck = JobsRepository(conn).stuck(scheduled_after_seconds=scheduled_after)
        unhandled = WorkersRegistry(engine, settings.worker_ttl_seconds).types_without_worker()
    if as_json:
        rows = [camel({**dataclasses.asdict(j), "status": j.status.value}) for j in stuck]
        types = [rest_fields(TypeWithoutWorkerOut.of(t)) for t in unhandled]
        emit_json({"jobs": rows, "typesWithoutWorker": types})
        return
    for t in unhandled:
        typer.echo(t.message)
    if not stuck:
        typer.echo("no stuck jobs")
        return
    table = Table(box=box.SIMPLE_HEAD, title=f"{len(stuck)} stuck job(s)", title_justify="left")
    for name in ("id", "type", "status", "attempt", "owner", "stuck for", "why"):
        table.add_column(name)
    for j in stuck:
        table.add_row(
            str(j.id),
            j.type,
            j.status.value,
            str(j.attempt),
            j.lease_owner or "-",
            f"{j.stuck_seconds:.0f}s",
            j.why,
        )
    Console().print(table)


def _with_limits(ctx: typer.Context, action: Any) -> Any:
    with store(ctx) as engine, transaction(engine) as conn:
        return action(QueueLimitRepository(conn))


@queues_app.command("limit")
@files_refusals("queue_limit.set", "queue")
def queues_limit(
    ctx: typer.Context,
    queue: Annotated[str, typer.Argument(help="Queue name.")],
    max_running: Annotated[int, typer.Argument(min=1, help="Jobs claimed or running at once.")],
) -> None:
    """Allow at most MAX_RUNNING of QUEUE's jobs at once across the fleet (within ~2 s)."""
    with store(ctx) as engine, transaction(engine) as conn:
        QueueLimitRepository(conn).set(queue, max_running)
        detail = {"maxRunning": max_running}
        record(conn, cli_origin(), "queue_limit.set", object_id=queue, detail=detail)
    typer.echo(f"queue {queue}: at most {max_running} job(s) claimed or running at once")


@queues_app.command("unlimit")
@files_refusals("queue_limit.delete", "queue")
def queues_unlimit(
    ctx: typer.Context, queue: Annotated[str, typer.Argument(help="Queue name.")]
) -> None:
    """Remove QUEUE's limit; its waiting jobs are published by the leader as usual."""
    with store(ctx) as engine, transaction(engine) as conn:
        removed = QueueLimitRepository(conn).clear(queue)
        if removed:
            record(conn, cli_origin(), "queue_limit.delete", object_id=queue)
    typer.echo(f"queue {queue}: " + ("limit removed" if removed else "had no limit"))


@queues_app.command("list")
def queues_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every queue with a limit."""
    limits: dict[str, int] = _with_limits(ctx, lambda repo: repo.all())
    if as_json:
        typer.echo(json.dumps(limits, sort_keys=True))
        return
    for queue, limit in limits.items():
        typer.echo(f"{queue}\t{limit}")
    if not limits:
        typer.echo("no queue has a limit")


def main() -> None:
    app()
