"""``jobengine types``: the fleet's catalogue of job types, as workers announced them.

Read from Postgres, never from handler code, so it works where no handler module is installed.
Exit codes as for every command: 0 done, 1 an error (an unknown type among them), 2 bad usage.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from jobengine.api.schemas_types import JobTypeOut
from jobengine.catalogue import CatalogueEntry
from jobengine.cli_common import (
    JsonOption,
    emit_json,
    job_types,
    rest_fields,
    shorten,
    store,
    table_console,
    when,
)

types_app = typer.Typer(no_args_is_help=True, help="List job types and show their payload schemas.")


def type_dict(entry: CatalogueEntry) -> dict[str, Any]:
    """A type as ``GET /api/v1/job-types`` shows it, camelCase."""
    return rest_fields(JobTypeOut.of(entry))


@types_app.command("list")
def types_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every job type the fleet accepts, with its queue, version and who announced it."""
    with store(ctx) as engine:
        entries = job_types(engine).entries()
    if as_json:
        emit_json({"items": [type_dict(e) for e in entries]})
        return
    table = Table(box=box.SIMPLE)
    for column in ("type", "queue", "version", "hash", "flags", "declared by", "updated", "about"):
        table.add_column(column)
    for e in entries:
        flags = ",".join(
            flag
            for flag, on in (("network", e.spec.needs_network), ("commands", e.spec.runs_commands))
            if on
        )
        table.add_row(
            e.spec.name,
            e.spec.queue,
            str(e.spec.version),
            e.spec.definition_hash[:12],
            flags or "-",
            e.declared_by,
            when(e.updated_at),
            shorten(e.spec.description, 50),
        )
    table_console().print(table)


@types_app.command("show")
def types_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The job type.")],
    as_json: JsonOption = False,
) -> None:
    """One job type with its defaults and the JSON Schema its payloads must fit."""
    with store(ctx) as engine:
        entry = job_types(engine).entry(name)
    data = type_dict(entry)
    if as_json:
        emit_json(data)
        return
    for key, value in data.items():
        if key not in ("payloadSchema", "retryPolicy"):
            typer.echo(f"{key}: {when(value) if key == 'updatedAt' else value}")
    typer.echo(f"retryPolicy: {json.dumps(data['retryPolicy'], sort_keys=True)}")
    schema = data["payloadSchema"]
    typer.echo("payloadSchema: " + ("none (any payload)" if schema is None else ""))
    if schema is not None:
        typer.echo(json.dumps(schema, indent=2, sort_keys=True))
