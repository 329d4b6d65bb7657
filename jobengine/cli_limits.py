"""``jobengine limits``: the fleet's rate limits, set, listed and deleted in Postgres.

Every submitting process applies a change within a few seconds. ``--json`` prints the REST
fields of ``/api/v1/limits``. Exit codes as for every command: 0 done, 1 an error (a refused
definition, an unknown limit), 2 bad usage.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from jobengine.cli_common import (
    JsonOption,
    cli_origin,
    emit_json,
    files_refusals,
    note,
    store,
    table_console,
    when,
)
from jobengine.limits import registry
from jobengine.limits.definition import RateLimit, parse_scope
from jobengine.limits.views import limit_view
from jobengine.store.database import transaction

limits_app = typer.Typer(
    no_args_is_help=True, help="Rate limits: token buckets per job type, tenant or payload key."
)


@limits_app.command("set")
@files_refusals("limit.set", "name")
def limits_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The limit's name.")],
    rate: Annotated[float, typer.Option(help="Tokens added per --per.")],
    burst: Annotated[int, typer.Option(help="The bucket's capacity.")],
    scope: Annotated[
        str, typer.Option(help="type (one bucket), tenant (one per tenant) or key (one per value).")
    ] = "type",
    job_type: Annotated[
        str | None, typer.Option("--type", help="The job type it admits (any type: tenant only).")
    ] = None,
    per: Annotated[str, typer.Option(help="second, minute or hour.")] = "second",
    key_path: Annotated[
        str | None, typer.Option(help="Payload field whose value picks the bucket (scope key).")
    ] = None,
    units: Annotated[int, typer.Option(help="Tokens one job costs.")] = 1,
    units_path: Annotated[
        str | None, typer.Option(help="Payload field that may say how many tokens a job costs.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create or replace a limit; jobs already waiting keep their slots."""
    limit = RateLimit(
        name=name,
        scope=parse_scope(scope),
        rate=rate,
        per=per,
        burst=burst,
        job_type=job_type,
        key_path=key_path,
        units=units,
        units_path=units_path,
    )
    with store(ctx) as engine, transaction(engine) as conn:
        stored = registry.set_limit(conn, limit, origin=cli_origin())
        status = {s.name: s for s in registry.statuses(conn)}.get(name)
    if as_json:
        emit_json(limit_view(stored, status))
        return
    note(f"limit {name}: {rate:g} per {per}, burst {burst}")


@limits_app.command("list")
def limits_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every limit, with its tokens now, the jobs waiting for it and the next admission."""
    with store(ctx) as engine, transaction(engine) as conn:
        stored = registry.list_limits(conn)
        statuses = {s.name: s for s in registry.statuses(conn)}
    views = [limit_view(s, statuses.get(s.limit.name)) for s in stored]
    if as_json:
        emit_json({"items": views})
        return
    table = Table(box=box.SIMPLE)
    for column in ("limit", "applies to", "rate", "burst", "units", "tokens", "waiting", "next"):
        table.add_column(column)
    for v in views:
        applies = v["jobType"] or "every type"
        if v["scope"] == "tenant":
            applies += ", per tenant"
        elif v["scope"] == "key":
            applies += f", per {v['keyPath']}"
        table.add_row(
            v["name"],
            applies,
            f"{v['rate']:g}/{v['per']}",
            str(v["burst"]),
            v["unitsPath"] or str(v["units"]),
            str(v["tokens"]),
            str(v["waiting"]),
            when(v["nextAdmissionAt"]),
        )
    table_console().print(table)


@limits_app.command("delete")
@files_refusals("limit.delete", "name")
def limits_delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The limit's name.")],
    as_json: JsonOption = False,
) -> None:
    """Delete a limit and its buckets; jobs waiting for it keep their slots."""
    with store(ctx) as engine, transaction(engine) as conn:
        registry.delete_limit(conn, name, origin=cli_origin())
    if as_json:
        emit_json({"name": name, "deleted": True})
        return
    note(f"limit {name} deleted; jobs waiting for it keep their slots")
