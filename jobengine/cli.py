"""The ``jobengine`` command line.

Operators read its errors in terminals and in CI logs, so every failure is one line on stderr
(``error: <message> (<hint>)``, exit code 1) unless ``--debug`` asks for the traceback. Usage
errors keep Typer's exit code 2.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer
from pydantic import ValidationError as SettingsInvalid
from rich import box
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from config.logging import configure_logging
from config.settings import Settings
from jobengine.domain.status import FINAL_STATES, JobStatus
from jobengine.domain.transitions import TRANSITIONS
from jobengine.errors import JobEngineError
from jobengine.services import (
    ConfigurationError,
    current_database_revision,
    database,
    downgrade_database,
    head_revision,
    masked_url,
    upgrade_database,
)

EXIT_ERROR = 1


def one_line(text: str) -> str:
    """Driver messages span lines (psycopg adds a second one); a log line must not."""
    return " ".join(text.split())


def format_error(exc: BaseException) -> str:
    if isinstance(exc, JobEngineError):
        message, hint = exc.message, exc.hint
    else:
        message = f"unexpected {type(exc).__name__}: {exc}"
        hint = "rerun with --debug for the traceback"
    line = f"error: {one_line(message)}"
    return f"{line} ({one_line(hint)})" if hint else line


def load_settings() -> Settings:
    """Settings, with a bad ``JOBENGINE_*`` value reported as the variable to fix."""
    try:
        return Settings()
    except SettingsInvalid as exc:
        first = exc.errors()[0]
        field = "_".join(str(part) for part in first["loc"]).upper()
        what = f"JOBENGINE_{field} is invalid" if field else "the settings do not fit together"
        raise ConfigurationError(
            f"{what}: {first['msg']}",
            hint="Fix it in the environment or in .env; config/example.env shows valid values.",
        ) from exc


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
db_app = typer.Typer(no_args_is_help=True, help="Migrate the job store's schema.")
app.add_typer(db_app, name="db")


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


def _settings(ctx: typer.Context) -> Settings:
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = load_settings()
    return root.obj


def _note(text: str) -> None:
    """Context for humans goes to stderr, so stdout stays parseable (``db current``)."""
    typer.echo(text, err=True)


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
    with database(_settings(ctx)) as (url, _server):
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
    with database(_settings(ctx)) as (url, _server):
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
    with database(_settings(ctx)) as (url, _server):
        revision = current_database_revision(url)
    _note(f"database: {masked_url(url)}")
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

    code = dev_mode.run(_settings(ctx), once=once)
    if code:
        raise typer.Exit(code)


@app.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Run a Celery worker of the fleet; extra arguments go to `celery worker` (e.g. -c 4)."""
    import os
    import sys

    argv = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-E", *ctx.args]
    os.execv(sys.executable, argv)


@app.command("reaper")
def reaper(
    name: Annotated[str | None, typer.Option(help="Name in leases and history.")] = None,
) -> None:
    """Run a reaper; of all reapers running, one leads (a Postgres advisory lock)."""
    from jobengine.fleet import run_reaper

    run_reaper(name=name)


@app.command("flower", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def flower(ctx: typer.Context) -> None:
    """Run Flower on the fleet's broker; extra arguments go to `celery flower`."""
    import os
    import sys

    argv = [sys.executable, "-m", "celery", "-A", "workers.app", "flower", *ctx.args]
    os.execv(sys.executable, argv)


def main() -> None:
    app()
