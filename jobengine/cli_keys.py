"""``jobengine keys``: create, list and revoke API keys.

A key's secret is printed once, at creation, and never again: only its hash is stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection

from config.settings import Settings
from jobengine.api.keys import JOBS_COMMAND, SCOPES, ApiKey, ApiKeyStore
from jobengine.cli_common import cli_origin, files_refusals
from jobengine.services import database
from jobengine.store.database import make_engine, transaction

keys_app = typer.Typer(no_args_is_help=True, help="API keys: one tenant and a set of scopes each.")

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]


@contextmanager
def _keys(ctx: typer.Context) -> Iterator[ApiKeyStore]:
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    with database(settings) as (url, _server):
        engine = make_engine(url, pool_size=1)
        try:
            conn: Connection
            with transaction(engine) as conn:
                yield ApiKeyStore(conn)
        finally:
            engine.dispose()


def _key_dict(key: ApiKey) -> dict[str, object]:
    return {
        "prefix": key.prefix,
        "tenantId": key.tenant_id,
        "name": key.name,
        "scopes": list(key.scopes),
        "createdAt": key.created_at.isoformat() if key.created_at else None,
        "revokedAt": key.revoked_at.isoformat() if key.revoked_at else None,
        "lastUsedAt": key.last_used_at.isoformat() if key.last_used_at else None,
    }


@keys_app.command("create")
@files_refusals("key.create")
def keys_create(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for.")],
    name: Annotated[str, typer.Option(help="Who or what uses it, for listings.")],
    scope: Annotated[
        list[str],
        typer.Option(
            help=f"Repeat for several: {', '.join(SCOPES)}. {JOBS_COMMAND} lets the key submit "
            "job types that run commands on the workers (shell), where the installation "
            "enables them (JOBENGINE_COMMAND_TYPES_ENABLED)."
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Create a key and print it (once: it cannot be shown again)."""
    with _keys(ctx) as store:
        issued = store.create(tenant, name, scope, origin=cli_origin())
    if as_json:
        typer.echo(json.dumps({**_key_dict(issued.key), "key": issued.plaintext}, sort_keys=True))
        return
    typer.echo(issued.plaintext)
    typer.echo(
        f"key {issued.key.prefix} for tenant {tenant} ({', '.join(issued.key.scopes)}); "
        "store it now: it is not shown again",
        err=True,
    )


@keys_app.command("list")
def keys_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every key: prefix, tenant, name, scopes, and when it was last used or revoked."""
    with _keys(ctx) as store:
        keys = store.list()
    if as_json:
        typer.echo(json.dumps([_key_dict(k) for k in keys], sort_keys=True))
        return
    if not keys:
        typer.echo("no API keys")
        return
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("prefix", "tenant", "name", "scopes", "last used", "revoked"):
        table.add_column(column)
    for k in keys:
        data = _key_dict(k)
        table.add_row(
            k.prefix,
            k.tenant_id,
            k.name,
            " ".join(k.scopes),
            str(data["lastUsedAt"] or "-"),
            str(data["revokedAt"] or "-"),
        )
    Console().print(table)


@keys_app.command("revoke")
@files_refusals("key.revoke", "prefix")
def keys_revoke(
    ctx: typer.Context, prefix: Annotated[str, typer.Argument(help="The key's prefix.")]
) -> None:
    """Revoke a key: requests with it are refused from now on. Safe to run twice."""
    with _keys(ctx) as store:
        key = store.revoke(prefix, origin=cli_origin())
    typer.echo(f"key {key.prefix} ({key.name}, tenant {key.tenant_id}) is revoked")
