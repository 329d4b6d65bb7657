"""``jobengine audit``: read the audit log (``list``), newest first, with the REST filters.

The CLI reads Postgres itself, so it sees every tenant's entries and the callers' addresses,
as an admin key does. Other modules add their commands to ``audit_app``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from jobengine.api.cursors import AUDIT_CURSOR, decode_cursor
from jobengine.api.schemas_audit import AuditEntryOut, AuditList
from jobengine.audit import action as audited_action
from jobengine.audit.log import AuditFilter, AuditPage, list_entries
from jobengine.cli_common import (
    CursorOption,
    JsonOption,
    cursor_out,
    emit_json,
    parse_time,
    rest_fields,
    shorten,
    store,
    table_console,
    when,
)
from jobengine.errors import ValidationError
from jobengine.store.database import transaction

audit_app = typer.Typer(
    no_args_is_help=True, help="The audit log: who did what to which object, done or refused."
)

def _outcome(value: str | None) -> str | None:
    if value not in (None, "done", "refused"):
        raise ValidationError(f"--outcome {value!r} is neither done nor refused", hint="Pick one.")
    return value


@audit_app.command("list")
def audit_list(
    ctx: typer.Context,
    actor: Annotated[str | None, typer.Option(help="e.g. 'cli:ops@host1'.")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. dlq.replay, key.revoke.")] = None,
    object_kind: Annotated[str | None, typer.Option(help="e.g. job, schedule, key.")] = None,
    object_id: Annotated[str | None, typer.Option(help="The object's id.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's entries.")] = None,
    outcome: Annotated[str | None, typer.Option(help="done or refused.")] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601; inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601; exclusive.")] = None,
    job: Annotated[int | None, typer.Option(min=1, help="Entries that touched this job.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Entries matching every filter given, newest first, a page at a time."""
    if action is not None:
        audited_action(action)
    flt = AuditFilter(
        tenant=tenant,
        actor=actor,
        action=action,
        object_kind=object_kind,
        object_id=object_id,
        outcome=_outcome(outcome),
        since=parse_time("--since", since),
        until=parse_time("--until", until),
        job_id=job,
    )
    before = decode_cursor(cursor, AUDIT_CURSOR) if cursor else None
    with store(ctx) as engine, transaction(engine) as conn:
        page = list_entries(conn, flt, before_id=before, limit=limit)
    if as_json:
        emit_json(rest_fields(_as_rest(page)))
        return
    _print(page)


def _as_rest(page: AuditPage) -> AuditList:
    return AuditList(
        items=[AuditEntryOut.of(e, show_client=True) for e in page.entries],
        next_cursor=cursor_out(page.next_before, AUDIT_CURSOR),
    )


def _print(page: AuditPage) -> None:
    if not page.entries:
        typer.echo("no audit entries match")
        return
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("id", "at", "actor", "surface", "action", "object", "tenant", "outcome"):
        table.add_column(column)
    for e in page.entries:
        outcome = e.outcome if e.reason is None else f"{e.outcome} ({e.reason})"
        jobs = f" +{len(e.job_ids)} job(s)" if e.job_ids and e.object_kind != "job" else ""
        table.add_row(
            str(e.id),
            when(e.at),
            shorten(e.actor, 40),
            e.surface,
            e.action,
            f"{e.object_kind} {e.object_id or '-'}{jobs}",
            e.tenant or "-",
            outcome,
        )
    table_console().print(table)
    if page.next_before is not None:
        typer.echo(f"older entries: --cursor {cursor_out(page.next_before, AUDIT_CURSOR)}")
