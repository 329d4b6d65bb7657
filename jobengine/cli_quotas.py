"""``jobengine quotas``: tenant quotas and caps, and fair-shared queues.

``--json`` prints the fields the REST API answers (``/api/v1/quotas``, ``/api/v1/fair-queues``),
camelCase as there. Changes apply fleet-wide within seconds, without a restart. Exit codes as
for every command: 0 done, 1 an error (a tenant without a quota named), 2 bad usage.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from jobengine.cli_common import (
    JsonOption,
    cli_origin,
    emit_json,
    files_refusals,
    store,
    table_console,
)
from jobengine.quotas.book import FairQueueUsage, Quota, QuotaRepository, QuotaUsage
from jobengine.quotas.errors import QuotaNotFound
from jobengine.store.database import transaction

quotas_app = typer.Typer(
    no_args_is_help=True, help="Tenant quotas and caps, and queues shared fairly across tenants."
)
fair_app = typer.Typer(no_args_is_help=True, help="Queues whose jobs go round-robin by tenant.")
quotas_app.add_typer(fair_app, name="fair")


def quota_fields(usage: QuotaUsage) -> dict[str, Any]:
    quota = usage.quota
    return {
        "tenantId": quota.tenant_id,
        "maxQueued": quota.max_queued,
        "maxRunning": quota.max_running,
        "weight": quota.weight,
        "queued": usage.queued,
        "running": usage.running,
        "waiting": usage.waiting,
        "updatedAt": quota.updated_at,
    }


def fair_fields(usage: FairQueueUsage) -> dict[str, Any]:
    return {
        "queue": usage.fair.queue,
        "maxInFlight": usage.fair.max_in_flight,
        "waiting": usage.waiting,
        "inFlight": usage.in_flight,
        "updatedAt": usage.fair.updated_at,
    }


def _limit(value: int | None) -> str:
    return "-" if value is None else str(value)


@quotas_app.command("set")
@files_refusals("quota.set", "tenant")
def quotas_set(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(help="The tenant.")],
    max_queued: Annotated[
        int | None, typer.Option(min=0, help="Most jobs pending or scheduled; unset: no limit.")
    ] = None,
    max_running: Annotated[
        int | None, typer.Option(min=1, help="Most jobs claimed or running at once; unset: none.")
    ] = None,
    weight: Annotated[int, typer.Option(min=1, help="Its share in fair-shared queues.")] = 1,
    as_json: JsonOption = False,
) -> None:
    """Set TENANT's quota, cap and weight (replacing what it had)."""
    with store(ctx) as engine, transaction(engine) as conn:
        repo = QuotaRepository(conn)
        repo.set(Quota(tenant, max_queued, max_running, weight), origin=cli_origin())
        [usage] = [u for u in repo.usage() if u.quota.tenant_id == tenant]
    if as_json:
        emit_json(quota_fields(usage))
        return
    typer.echo(
        f"tenant {tenant}: max queued {_limit(max_queued)}, max running {_limit(max_running)},"
        f" weight {weight} (now {usage.queued} queued, {usage.running} running)"
    )


@quotas_app.command("delete")
@files_refusals("quota.delete", "tenant")
def quotas_delete(
    ctx: typer.Context, tenant: Annotated[str, typer.Argument(help="The tenant.")]
) -> None:
    """Remove TENANT's quota and cap; its waiting jobs are published as usual."""
    with store(ctx) as engine, transaction(engine) as conn:
        if not QuotaRepository(conn).delete(tenant, origin=cli_origin()):
            raise QuotaNotFound(f"tenant {tenant!r} has no quota")
    typer.echo(f"tenant {tenant}: quota removed")


@quotas_app.command("list")
def quotas_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every tenant with a quota, with what it uses now."""
    with store(ctx) as engine, transaction(engine) as conn:
        usage = QuotaRepository(conn).usage()
    if as_json:
        emit_json({"items": [quota_fields(u) for u in usage]})
        return
    if not usage:
        typer.echo("no tenant has a quota")
        return
    table = Table(box=box.SIMPLE)
    for column in ("tenant", "queued", "max queued", "running", "max running", "waiting", "weight"):
        table.add_column(column)
    for u in usage:
        table.add_row(
            u.quota.tenant_id,
            str(u.queued),
            _limit(u.quota.max_queued),
            str(u.running),
            _limit(u.quota.max_running),
            str(u.waiting),
            str(u.quota.weight),
        )
    table_console().print(table)


@fair_app.command("set")
@files_refusals("fair_queue.set", "queue")
def fair_set(
    ctx: typer.Context,
    queue: Annotated[str, typer.Argument(help="The queue.")],
    max_in_flight: Annotated[
        int, typer.Option(min=1, help="Most of its messages in the broker at once.")
    ] = 8,
    as_json: JsonOption = False,
) -> None:
    """Share QUEUE fairly: the leader publishes its jobs round-robin across tenants."""
    with store(ctx) as engine, transaction(engine) as conn:
        repo = QuotaRepository(conn)
        repo.set_fair_queue(queue, max_in_flight, origin=cli_origin())
        [usage] = [u for u in repo.fair_usage() if u.fair.queue == queue]
    if as_json:
        emit_json(fair_fields(usage))
        return
    typer.echo(f"queue {queue}: shared fairly, at most {max_in_flight} message(s) in flight")


@fair_app.command("delete")
@files_refusals("fair_queue.delete", "queue")
def fair_delete(
    ctx: typer.Context, queue: Annotated[str, typer.Argument(help="The queue.")]
) -> None:
    """Stop sharing QUEUE fairly; its waiting jobs are published in order, as usual."""
    with store(ctx) as engine, transaction(engine) as conn:
        if not QuotaRepository(conn).delete_fair_queue(queue, origin=cli_origin()):
            raise QuotaNotFound(f"queue {queue!r} is not fair-shared")
    typer.echo(f"queue {queue}: no longer shared fairly")


@fair_app.command("list")
def fair_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every fair-shared queue, with its jobs waiting and its messages in flight."""
    with store(ctx) as engine, transaction(engine) as conn:
        usage = QuotaRepository(conn).fair_usage()
    if as_json:
        emit_json({"items": [fair_fields(u) for u in usage]})
        return
    if not usage:
        typer.echo("no queue is shared fairly")
        return
    for u in usage:
        typer.echo(
            f"{u.fair.queue}\tmax in flight {u.fair.max_in_flight}\tin flight {u.in_flight}"
            f"\twaiting {u.waiting}"
        )
