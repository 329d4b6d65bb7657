"""``jobengine db prune``: retention run by hand (the leader runs it too when
``JOBENGINE_PRUNE_AFTER_SECONDS`` is set).

A bad flag is a usage error (exit 2, Typer's own line naming the flag) before anything runs;
no confirmation is asked, since it deletes only what retention would and ``--dry-run`` shows
that first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from sqlalchemy import Connection

from jobengine.artifacts.storage import storage_from_url
from jobengine.audit import record
from jobengine.cli_common import (
    JsonOption,
    cli_origin,
    emit_json,
    files_refusals,
    note,
    parse_duration,
    settings_of,
    store,
    when,
)
from jobengine.errors import ValidationError
from jobengine.store.retention import TABLES, prune


def _age(value: str) -> str:
    """Refuse an unparsable or zero age here, so Typer reports it as a usage error."""
    try:
        age = parse_duration("--older-than", value)
    except ValidationError as exc:
        hint = exc.hint[:1].lower() + exc.hint[1:]
        raise typer.BadParameter(f"{value!r} is not a duration; {hint}") from None
    if age <= timedelta(0):
        raise typer.BadParameter(
            f"{value!r} would delete every final job, however recent; give an age above zero, "
            "e.g. 7d"
        )
    return value


def _batch(value: int) -> int:
    if value < 1:
        raise typer.BadParameter(
            f"{value} rows per batch would remove nothing; give at least 1, e.g. 5000"
        )
    return value


@files_refusals("jobs.prune")
def db_prune(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            callback=_age,
            help="Remove what finished (or was last changed) longer ago than this: 12h, 7d, 2w.",
        ),
    ] = "7d",
    batch: Annotated[
        int,
        typer.Option(
            "--batch", callback=_batch, help="Rows per batch; each batch is its own transaction."
        ),
    ] = 5000,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be removed; remove nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete final jobs older than --older-than with their history, events and artifacts
    (rows first, then their bytes), outbox events already counted, and replayed or discarded
    dead letters. Counters are kept; jobs that are not final and open dead letters are never
    touched."""
    before = datetime.now(UTC) - parse_duration("--older-than", older_than)
    filed: list[int] = []

    def audited(conn: Connection) -> None:
        """The prune's first batch files it in the audit log, so no row goes unfiled."""
        if not dry_run and not filed:
            detail = {"before": before.isoformat(), "batch": batch}
            filed.append(record(conn, cli_origin(), "jobs.prune", detail=detail))

    with store(ctx) as engine:
        settings = settings_of(ctx)
        report = prune(
            engine,
            before=before,
            batch=batch,
            dry_run=dry_run,
            each_batch=audited,
            artifacts=storage_from_url(settings.artifacts_url, settings.data_dir),
        )
    if as_json:
        emit_json(
            {
                "before": before,
                "dryRun": dry_run,
                "removed": report.removed,
                "batches": report.batches,
                "artifacts": report.artifacts,
            }
        )
        return
    verb = "would remove" if dry_run else "removed"
    note(f"older than {when(before)}, in {report.batches} batch(es) of up to {batch} rows")
    for table in TABLES:
        typer.echo(f"{verb} {report.removed[table]:>10} {table}")
    if report.artifacts:
        note(f"{verb} {report.artifacts} artifact(s) of those jobs, with their bytes")
    if dry_run:
        note("dry run: nothing removed")
