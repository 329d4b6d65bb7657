"""``jobengine dlq``: the operator's dead-letter commands (list → show → dry run → replay).

They are run at 3 a.m. by someone who may run them twice, so each says what it did, and doing
again what is already done (a replayed entry replayed, a discarded one discarded) exits 0 and
says so. Exit codes: 0 done or already done, 1 an error (unknown id, bad filter, refused
replay, declined confirmation), 2 bad usage. Replays and discards are recorded as done by
``cli:<os user>@<hostname>``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from sqlalchemy import Engine

from config.settings import Settings
from jobengine.api.cursors import DEAD_LETTER_CURSOR
from jobengine.api.schemas_dlq import BulkReplayOut, ReplayOut, detail, summary
from jobengine.cli_common import (
    CursorOption,
    JsonOption,
    RecordingPublisher,
    broker_publisher,
    cli_actor,
    cli_origin,
    cursor_after,
    cursor_out,
    dispatch_note,
    emit_json,
    files_refusals,
    job_types,
    note,
    parse_choices,
    parse_duration,
    parse_json,
    parse_time,
    rest_fields,
    settings_of,
    shorten,
    store,
    table_console,
    when,
)
from jobengine.dead_letters import (
    DeadLetters,
    Replay,
    ReplayOptions,
    ReplayOutcome,
)
from jobengine.domain.dead_letter import DeadLetter, DeadLetterReason, DeadLetterStatus
from jobengine.errors import ValidationError
from jobengine.store.dead_letter_repository import DeadLetterFilter

dlq_app = typer.Typer(
    no_args_is_help=True,
    help="Dead letters: jobs that failed for good. List, show, replay, discard, purge.",
)

TRACEBACK_LINES = 40
"""Lines of a traceback ``dlq show`` prints: the end, where the error was raised."""

TenantOption = Annotated[str | None, typer.Option("--tenant", help="Only this tenant's.")]
TypesOption = Annotated[
    list[str] | None, typer.Option("--type", help="Job type (repeat for several).")
]
QueuesOption = Annotated[list[str] | None, typer.Option("--queue", help="Queue (repeatable).")]
_REASONS_HELP = (
    "Why it failed: retries_exhausted, non_retryable, poison, lease_expired (repeatable)."
)
ReasonsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--failure-reason",
        "--reason",
        help=_REASONS_HELP + " --reason is its old name: deprecated, removed in the next release.",
    ),
]
FailureReasonsOption = Annotated[
    list[str] | None, typer.Option("--failure-reason", help=_REASONS_HELP)
]
"""The filter's one name, as the API's ``failureReason``: ``--reason`` is the text an operator
records with a replay or a discard, so the filter cannot share it."""
ErrorClassesOption = Annotated[
    list[str] | None,
    typer.Option("--error-class", help="Error class, bare or module-qualified (repeatable)."),
]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="Last failed at or after (ISO 8601 with offset).")
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="Last failed before (ISO 8601 with offset).")
]
PatchOption = Annotated[
    str | None,
    typer.Option("--patch", help="JSON object merged into the payload (null deletes a key)."),
]
FreshBudgetOption = Annotated[
    bool,
    typer.Option("--fresh-budget", help="Grant every retry again, not just one attempt."),
]


def dead_letter_filter(
    *,
    tenant: str | None,
    types: list[str] | None,
    queues: list[str] | None,
    reasons: list[str] | None,
    error_classes: list[str] | None,
    since: str | None,
    until: str | None,
    statuses: tuple[DeadLetterStatus, ...] = (DeadLetterStatus.OPEN,),
) -> DeadLetterFilter:
    return DeadLetterFilter(
        tenant_id=tenant,
        types=tuple(types or ()),
        queues=tuple(queues or ()),
        reasons=tuple(parse_choices("--failure-reason", reasons or (), DeadLetterReason)),
        error_classes=tuple(error_classes or ()),
        statuses=statuses,
        failed_from=parse_time("--since", since),
        failed_to=parse_time("--until", until),
    )


def _statuses(value: str) -> tuple[DeadLetterStatus, ...]:
    if value.strip().lower() == "all":
        return ()
    try:
        return tuple(parse_choices("--status", [value], DeadLetterStatus))
    except ValidationError as exc:
        raise ValidationError(exc.message, hint=exc.hint.replace(".", ", all.")) from None


def replay_options(reason: str | None, patch: str | None, fresh_budget: bool) -> ReplayOptions:
    """Checked before anything is read or written, so a typo changes nothing."""
    return ReplayOptions(
        actor=cli_actor(),
        reason=reason,
        payload_patch=parse_json("--patch", patch, object_only=True),
        fresh_budget=fresh_budget,
    )


def _service(
    engine: Engine, settings: Settings, publisher: RecordingPublisher | None
) -> DeadLetters:
    return DeadLetters(
        engine,
        publisher=publisher,
        types=job_types(engine),
        max_payload_bytes=settings.max_payload_bytes,
    )


def _summary(entry: DeadLetter) -> dict[str, Any]:
    """An entry as ``GET /api/v1/dlq`` lists it."""
    return rest_fields(summary(entry))


def _entries_table(entries: list[DeadLetter], title: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left")
    for name in ("id", "job", "type", "queue", "reason", "error class", "message"):
        table.add_column(name, overflow="fold")
    for name in ("attempts", "last failure", "status"):
        table.add_column(name)
    for e in entries:
        table.add_row(
            str(e.id),
            str(e.job_id),
            e.type,
            e.queue,
            e.reason.value,
            (e.error_class or "-").rsplit(".", 1)[-1],
            shorten(e.error_message, 40),
            str(e.attempts),
            when(e.last_failed_at),
            e.status.value,
        )
    return table


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    tenant: TenantOption = None,
    types: TypesOption = None,
    queues: QueuesOption = None,
    reasons: ReasonsOption = None,
    error_classes: ErrorClassesOption = None,
    status: Annotated[
        str, typer.Option("--status", help="open, replayed, discarded or all.")
    ] = "open",
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Entries per page.")] = 50,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Dead letters in id order, a page at a time; open ones unless --status says otherwise.

    The title counts every entry the filters match, not only this page (up to 10,000; past
    that it says "at least")."""
    flt = dead_letter_filter(
        tenant=tenant,
        types=types,
        queues=queues,
        reasons=reasons,
        error_classes=error_classes,
        since=since,
        until=until,
        statuses=_statuses(status),
    )
    with store(ctx) as engine:
        service = DeadLetters(engine)
        page = service.page(flt, after_id=cursor_after(cursor, DEAD_LETTER_CURSOR), limit=limit)
        total = service.total(flt)
    if as_json:
        emit_json(
            {
                "items": [_summary(e) for e in page.items],
                "nextCursor": cursor_out(page.next_cursor, DEAD_LETTER_CURSOR),
                "total": total.count,
                "totalExact": total.exact,
            }
        )
        return
    if not page.items:
        typer.echo("no dead letters match")
        return
    title = f"dead letters matching: {total.label()} (this page: {len(page.items)})"
    table_console().print(_entries_table(page.items, title))
    if page.next_cursor is not None:
        typer.echo(f"more: rerun with --cursor {cursor_out(page.next_cursor, DEAD_LETTER_CURSOR)}")


def _bounded(traceback: str) -> str:
    lines = traceback.rstrip().splitlines()
    if len(lines) <= TRACEBACK_LINES:
        return "\n".join(lines)
    omitted = len(lines) - TRACEBACK_LINES
    return "\n".join(
        [f"... ({omitted} earlier lines; --json has them all)", *lines[-TRACEBACK_LINES:]]
    )


def _error_of(step: dict[str, Any]) -> str:
    error = (step.get("details") or {}).get("error") or {}
    return shorten(error.get("message"), 60) if step.get("toStatus") == "failed" else ""


@dlq_app.command("show")
def dlq_show(
    ctx: typer.Context,
    dead_letter_id: Annotated[int, typer.Argument(help="The dead letter's id.")],
    as_json: JsonOption = False,
) -> None:
    """One dead letter whole: its error and traceback, payload, timeline and replays."""
    with store(ctx) as engine:
        entry = DeadLetters(engine).get(dead_letter_id)
    shown = rest_fields(detail(entry, show_traceback=True))
    if as_json:
        emit_json(shown)
        return
    console = table_console()
    facts = Table(box=box.SIMPLE_HEAD, show_header=False)
    for key, value in (
        ("dead letter", str(entry.id)),
        ("job", f"{entry.job_id} ({entry.job_status.value if entry.job_status else '-'})"),
        ("type / queue", f"{entry.type} / {entry.queue}"),
        ("tenant / project", f"{entry.tenant_id} / {entry.project_id}"),
        ("status", f"{entry.status.value} since {when(entry.status_changed_at)}"),
        ("changed by", f"{entry.status_changed_by or '-'}: {entry.status_reason or '-'}"),
        ("reason", entry.reason.value),
        ("attempts", str(entry.attempts)),
        ("failed", f"first {when(entry.first_failed_at)}, last {when(entry.last_failed_at)}"),
        ("error", f"{entry.error_class or '-'} [{entry.error_code or '-'}]"),
        ("message", entry.error_message or "-"),
        ("exit code", "-" if entry.exit_code is None else str(entry.exit_code)),
    ):
        facts.add_row(key, value)
    console.print(facts)
    if entry.stderr_tail:
        console.print("stderr (last lines):", style="bold")
        console.print(entry.stderr_tail, highlight=False, markup=False)
    if entry.traceback:
        console.print("traceback (last lines):", style="bold")
        console.print(_bounded(entry.traceback), highlight=False, markup=False)
    console.print("payload when it failed:", style="bold")
    console.print(json.dumps(entry.payload, indent=2, sort_keys=True), markup=False)
    timeline = Table(box=box.SIMPLE_HEAD, title="timeline", title_justify="left")
    for name in ("attempt", "from → to", "at", "actor", "reason", "error"):
        timeline.add_column(name, overflow="fold")
    for step in shown["timeline"]:
        timeline.add_row(
            str(step.get("attempt")),
            f"{step.get('fromStatus') or '-'} → {step.get('toStatus')}",
            when(step.get("at")),
            step.get("actor") or "-",
            step.get("reason") or "-",
            _error_of(step),
        )
    console.print(timeline)
    if not entry.replays:
        console.print("never replayed")
        return
    replays = Table(box=box.SIMPLE_HEAD, title="replays", title_justify="left")
    for name in ("replay", "at", "actor", "reason", "fresh budget", "patch", "outcome"):
        replays.add_column(name, overflow="fold")
    for r in entry.replays:
        replays.add_row(
            str(r.id),
            when(r.at),
            r.actor,
            r.reason or "-",
            "yes" if r.fresh_budget else "no",
            json.dumps(r.payload_patch) if r.payload_patch is not None else "-",
            r.outcome.value,
        )
    console.print(replays)


def replay_one(
    ctx: typer.Context,
    resolve: Callable[[DeadLetters], int],
    options: ReplayOptions,
    *,
    as_json: bool,
) -> None:
    """Replay the entry ``resolve`` names and say what happened; shared with ``jobs retry``."""
    settings = settings_of(ctx)
    with store(ctx) as engine:
        publisher = broker_publisher(settings)
        service = _service(engine, settings, publisher)
        done: Replay = service.replay(resolve(service), options, origin=cli_origin())
    replayed = done.outcome is ReplayOutcome.REPLAYED
    published = replayed and publisher is not None and done.job_id in publisher.sent
    if as_json:
        emit_json(
            {
                **rest_fields(ReplayOut.of(done)),
                "replayId": done.replay_id,
                "published": published if replayed else None,
                "publishError": publisher.error if publisher is not None else None,
            }
        )
        return
    if not replayed:
        typer.echo(f"dead letter {done.dead_letter_id} was already replayed; nothing done")
        return
    typer.echo(f"replayed dead letter {done.dead_letter_id} (job {done.job_id})")
    if published:
        typer.echo(f"job {done.job_id} published to the broker")
    else:
        typer.echo(dispatch_note(publisher, f"job {done.job_id}"))


def _replay_many(
    ctx: typer.Context,
    flt: DeadLetterFilter,
    options: ReplayOptions,
    *,
    dry_run: bool,
    yes: bool,
    max_per_second: float | None,
    as_json: bool,
) -> None:
    settings = settings_of(ctx)
    if as_json and not yes and not dry_run:
        raise ValidationError(
            "a bulk replay with --json needs --yes",
            hint="Scripts cannot answer a prompt: preview with --dry-run, then pass --yes.",
        )
    with store(ctx) as engine:
        service = _service(engine, settings, None)
        selected = list(service.select(flt))
        if dry_run or not selected:
            _report_selection(selected, dry_run=dry_run, as_json=as_json)
            return
        if not yes and not typer.confirm(
            f"Replay {len(selected)} dead letter(s), ids {selected[0].id}..{selected[-1].id}?",
            err=True,
        ):
            note("aborted; nothing replayed")
            raise typer.Exit(1)
        publisher = broker_publisher(settings)
        service.publisher = publisher
        # The set the operator confirmed: nothing that failed after the count was shown.
        fixed = dataclasses.replace(flt, max_id=selected[-1].id)
        with Progress(
            TextColumn("replaying"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task("replay", total=len(selected))

            def progressed(_entry: DeadLetter, _done: Replay | None) -> None:
                bar.advance(task)
                if publisher is not None and publisher.error is not None:
                    service.publisher = None  # the broker is down: leave the rest to the leader

            report = service.replay_many(
                fixed,
                options,
                max_per_second=max_per_second,
                on_progress=progressed,
                origin=cli_origin(),
            )
    sent = publisher.sent if publisher is not None else set()
    unpublished = [r.job_id for r in report.replayed if r.job_id not in sent]
    if as_json:
        emit_json(
            {
                **rest_fields(BulkReplayOut.of(report)),
                "unpublishedJobIds": unpublished,
                "publishError": publisher.error if publisher is not None else None,
            }
        )
        return
    typer.echo(
        f"replayed {len(report.replayed)} of {len(report.selected)} dead letter(s);"
        f" skipped {len(report.skipped)}"
    )
    for entry_id, why in report.skipped:
        typer.echo(f"  skipped dead letter {entry_id}: {why}")
    if unpublished:
        typer.echo(dispatch_note(publisher, f"{len(unpublished)} job(s)"))
    elif report.replayed:
        typer.echo(f"{len(report.replayed)} job(s) published to the broker")


def _report_selection(selected: list[DeadLetter], *, dry_run: bool, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "dryRun": dry_run,
                "selected": [e.id for e in selected],
                "items": [_summary(e) for e in selected],
                "replayed": [],
                "skipped": [],
            }
        )
        return
    if not selected:
        typer.echo(
            "no open dead letter matches; "
            + ("nothing would be replayed" if dry_run else "nothing replayed")
        )
        return
    table_console().print(
        _entries_table(selected, f"{len(selected)} dead letter(s) would be replayed")
    )
    typer.echo(f"dry run: {len(selected)} dead letter(s) would be replayed; nothing changed")


@dlq_app.command("replay")
@files_refusals("dlq.replay", "dead_letter_id")
def dlq_replay(
    ctx: typer.Context,
    dead_letter_id: Annotated[
        int | None, typer.Argument(help="The dead letter to replay (or use --all-matching).")
    ] = None,
    all_matching: Annotated[
        bool, typer.Option("--all-matching", help="Replay every open entry the filters match.")
    ] = False,
    everything: Annotated[
        bool,
        typer.Option("--everything", help="With --all-matching and no filter: every open entry."),
    ] = False,
    tenant: TenantOption = None,
    types: TypesOption = None,
    queues: QueuesOption = None,
    reasons: FailureReasonsOption = None,
    error_classes: ErrorClassesOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be replayed; change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    max_per_second: Annotated[
        float | None,
        typer.Option(min=0.001, help="Pace a bulk replay so it does not flood the fleet."),
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Recorded in each job's history.")
    ] = None,
    patch: PatchOption = None,
    fresh_budget: FreshBudgetOption = False,
    as_json: JsonOption = False,
) -> None:
    """Send a dead letter's job back to the fleet; safe to run twice.

    One entry by id, or with --all-matching every open entry the filters match (at least one
    filter, or --everything). Preview a bulk replay with --dry-run.
    """
    bulk_only = {
        "--everything": everything,
        "--tenant": tenant,
        "--type": types,
        "--queue": queues,
        "--failure-reason": reasons,
        "--error-class": error_classes,
        "--since": since,
        "--until": until,
        "--dry-run": dry_run,
        "--yes": yes,
        "--max-per-second": max_per_second,
    }
    if all_matching == (dead_letter_id is not None):
        raise typer.BadParameter("give a dead letter id or --all-matching (not both)")
    options = replay_options(reason, patch, fresh_budget)
    if dead_letter_id is not None:
        misplaced = [name for name, value in bulk_only.items() if value]
        if misplaced:
            raise typer.BadParameter(f"{', '.join(misplaced)} only apply with --all-matching")
        replay_one(ctx, lambda _service: dead_letter_id, options, as_json=as_json)
        return
    flt = dead_letter_filter(
        tenant=tenant,
        types=types,
        queues=queues,
        reasons=reasons,
        error_classes=error_classes,
        since=since,
        until=until,
    )
    if flt == DeadLetterFilter() and not everything:
        raise ValidationError(
            "a bulk replay needs at least one filter",
            hint="Narrow it with --type, --queue, --failure-reason, --error-class, --tenant,"
            " --since or --until, or pass --everything to replay every open dead letter.",
        )
    _replay_many(
        ctx,
        flt,
        options,
        dry_run=dry_run,
        yes=yes,
        max_per_second=max_per_second,
        as_json=as_json,
    )


@dlq_app.command("discard")
@files_refusals("dlq.discard", "dead_letter_id")
def dlq_discard(
    ctx: typer.Context,
    dead_letter_id: Annotated[int, typer.Argument(help="The dead letter's id.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Recorded on the entry.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Close an open dead letter for good: it will never be replayed. Safe to run twice."""
    with store(ctx) as engine:
        service = DeadLetters(engine)
        changed = service.discard(
            dead_letter_id, actor=cli_actor(), reason=reason, origin=cli_origin()
        )
        entry = service.get(dead_letter_id)
    if as_json:
        emit_json({"deadLetterId": entry.id, "jobId": entry.job_id, "discarded": changed})
    elif changed:
        typer.echo(f"discarded dead letter {entry.id} (job {entry.job_id})")
    else:
        typer.echo(f"dead letter {entry.id} was already discarded; nothing done")


@dlq_app.command("purge")
@files_refusals("dlq.purge")
def dlq_purge(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option("--older-than", help="Age since replayed or discarded: 30m, 12h, 7d, 2w."),
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete replayed and discarded entries older than --older-than; open ones are kept.

    The jobs and their history stay; only the entries go.
    """
    before = datetime.now(UTC) - parse_duration("--older-than", older_than)
    if as_json and not yes:
        raise ValidationError(
            "purge with --json needs --yes", hint="Scripts cannot answer a prompt; pass --yes."
        )
    if not yes and not typer.confirm(
        f"Delete replayed and discarded dead letters last changed before {when(before)}?",
        err=True,
    ):
        note("aborted; nothing purged")
        raise typer.Exit(1)
    with store(ctx) as engine:
        purged = DeadLetters(engine).purge(before, origin=cli_origin())
    if as_json:
        emit_json({"purged": purged, "before": before})
        return
    typer.echo(
        f"purged {purged} dead letter(s) replayed or discarded before {when(before)};"
        " open ones are kept"
    )
