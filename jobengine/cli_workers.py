"""``jobengine workers``: the fleet as its workers announce it.

Each worker writes its own row (``workers.presence``); a worker whose row has not been
refreshed for ``JOBENGINE_WORKER_TTL_SECONDS`` is gone. What a type's jobs are waiting for when
no live worker handles it is in ``jobengine jobs stuck``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from jobengine.api.routes_workers import WorkerOut
from jobengine.cli_common import (
    JsonOption,
    emit_json,
    rest_fields,
    settings_of,
    store,
    table_console,
)
from jobengine.workers_registry import WorkersRegistry

workers_app = typer.Typer(no_args_is_help=True, help="The workers registry: who runs what.")


def _ago(seconds: float) -> str:
    return f"{seconds:.0f}s ago"


@workers_app.command("list")
def workers_list(
    ctx: typer.Context,
    include_gone: Annotated[
        bool, typer.Option("--all", help="Also workers that stopped heartbeating (gone).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Live workers (draining ones too): queues consumed, types handled, last heartbeat."""
    settings = settings_of(ctx)
    with store(ctx) as engine:
        workers = WorkersRegistry(engine, settings.worker_ttl_seconds).workers(
            include_gone=include_gone
        )
    if as_json:
        emit_json([rest_fields(WorkerOut.of(w)) for w in workers])
        return
    if not workers:
        typer.echo("no live workers" if not include_gone else "no workers registered")
        return
    table = Table(box=box.SIMPLE_HEAD, title=f"{len(workers)} worker(s)", title_justify="left")
    for name in ("name", "state", "host", "pid", "concurrency", "types", "queues", "last seen"):
        table.add_column(name)
    for w in workers:
        since = f" since {w.last_seen_at.isoformat(timespec='seconds')}" if w.gone else ""
        table.add_row(
            w.name,
            w.state + since,
            w.host,
            str(w.pid),
            "-" if w.concurrency is None else str(w.concurrency),
            ", ".join(w.types),
            ", ".join(w.queues),
            _ago(w.seen_seconds_ago),
        )
    table_console().print(table)
