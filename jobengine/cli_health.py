"""``jobengine health``: probes for an orchestrator, each exiting 0 when healthy and 1 with one
line saying what is wrong (2: the probe itself is misconfigured)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from jobengine.cli_common import settings_of

health_app = typer.Typer(no_args_is_help=True, help="Probes for Kubernetes, Compose or systemd.")

STALE_AFTER_BEATS = 3
"""A file older than this many beats: the loop missed them all, more than a slow host would."""


@health_app.command("worker")
def health_worker(
    ctx: typer.Context,
    file: Annotated[
        str | None,
        typer.Option(
            "--file", help="The worker's alive file (default: JOBENGINE_WORKER_ALIVE_FILE)."
        ),
    ] = None,
    max_age: Annotated[
        float | None,
        typer.Option(
            "--max-age",
            min=0.0,
            help=f"Seconds (default: {STALE_AFTER_BEATS} worker heartbeats).",
        ),
    ] = None,
) -> None:
    """Whether the worker's event loop still turns (``workers.alive``): asks neither Postgres
    nor Redis, so an outage of either never restarts a worker that is waiting it out."""
    settings = settings_of(ctx)
    name = file or settings.worker_alive_file
    if not name:
        typer.echo(
            "no alive file to read: set JOBENGINE_WORKER_ALIVE_FILE for the worker and the "
            "probe, or pass --file",
            err=True,
        )
        raise typer.Exit(2)
    limit = STALE_AFTER_BEATS * settings.worker_heartbeat_seconds if max_age is None else max_age
    try:
        age = time.time() - Path(name).stat().st_mtime
    except FileNotFoundError:
        typer.echo(
            f"{name} does not exist: the worker has not started its event loop, or is shutting "
            "down (it removes the file), or writes another path (JOBENGINE_WORKER_ALIVE_FILE)",
            err=True,
        )
        raise typer.Exit(1) from None
    if age > limit:
        typer.echo(
            f"the worker's event loop last touched {name} {age:.1f} s ago (limit {limit:.1f} s)",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"alive: {name} touched {age:.1f} s ago")
