"""``jobengine audit export`` and ``jobengine audit verify``: provenance exports on the
command line (``jobengine.audit.export``), registered on the ``audit`` group by ``register``.

``verify`` opens no database and reads no engine settings beyond what every command reads,
so an auditor runs it on a machine that has nothing but the file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from jobengine.audit.export import AsOf, Exporter, Selection, run_tenant, take_bound
from jobengine.audit.export_file import Written, header_of, resume, write
from jobengine.audit.verify import verify
from jobengine.cli_common import JsonOption, emit_json, note, parse_time, store
from jobengine.errors import ValidationError


class ExportExists(ValidationError):
    code = "EXPORT_FILE_EXISTS"
    hint = "Continue it with --resume FILE, or choose another --out (an export never overwrites)."


def _selection(
    tenant: str | None, run: int | None, since: str | None, until: str | None, like: Path | None
) -> tuple[Selection, AsOf | None]:
    if like is None:
        return Selection(
            tenant, run, parse_time("--since", since), parse_time("--until", until)
        ), None
    if any(v is not None for v in (tenant, run, since, until)):
        raise ValidationError(
            "--like takes the selection from the earlier export; it cannot be combined with "
            "--tenant, --run, --since or --until",
            hint="Drop those options, or drop --like and pass --as-of with them.",
        )
    header = header_of(like)
    return Selection.of_record(header["selection"]), AsOf.of_record(header["asOf"])


def _report(written: Written, where: str, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "lines": written.lines,
                "appended": written.appended,
                "lastHash": written.last_hash,
                "asOf": written.as_of.token,
            }
        )
        return
    note(
        f"{where}: {written.lines} lines ({written.appended} written now), asOf "
        f"{written.as_of.token}, last hash {written.last_hash}"
    )


def audit_export(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="The file to write ('-' for stdout); never overwritten."),
    ] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's jobs.")] = None,
    run: Annotated[int | None, typer.Option("--run", min=1, help="Only this run's jobs.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Jobs created at or after (ISO 8601, offset).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Jobs created before (ISO 8601, offset).")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="The bound of an earlier export (its header's asOf, e.g. j9.h40.a2.f0)."
        ),
    ] = None,
    like: Annotated[
        Path | None,
        typer.Option("--like", help="Export again the selection and bound of this export."),
    ] = None,
    resume_file: Annotated[
        Path | None,
        typer.Option("--resume", help="Continue this interrupted export where it stopped."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Export jobs, their histories, outcomes and audit entries as hash-chained NDJSON."""
    if resume_file is not None:
        if any(v is not None for v in (out, tenant, run, since, until, as_of, like)):
            raise ValidationError(
                "--resume continues the file's own selection and bound; give it alone",
                hint="Run `jobengine audit export --resume FILE` with no other selection.",
            )
        with store(ctx) as engine:
            written = resume(engine, resume_file)
        _report(written, str(resume_file), as_json)
        return
    if out is None:
        raise ValidationError(
            "no --out given", hint="Name the file to write with --out FILE (or --out - for stdout)."
        )
    selection, bound = _selection(tenant, run, since, until, like)
    if as_of is not None:
        if bound is not None:
            raise ValidationError(
                "--like already gives the bound", hint="Drop --as-of, or drop --like."
            )
        bound = AsOf.parse(as_of)
    to_stdout = str(out) == "-"
    if not to_stdout and out.exists():
        raise ExportExists(f"{out} already exists")
    with store(ctx) as engine:
        if selection.run_id is not None:
            run_tenant(engine, selection.run_id)  # an unknown run is refused, not exported empty
        exporter = Exporter(engine, selection, bound or take_bound(engine))
        if to_stdout:
            written = write(exporter, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            with out.open("xb") as stream_out:
                written = write(exporter, stream_out)
    _report(written, "stdout" if to_stdout else str(out), as_json and not to_stdout)


def audit_verify(
    file: Annotated[Path, typer.Argument(help="An export, as `jobengine audit export` wrote it.")],
    as_json: JsonOption = False,
) -> None:
    """Check an export's hash chain and manifest offline; name the first line that breaks."""
    if not file.is_file():
        raise ValidationError(f"{file} is not a file", hint="Give the path of an export file.")
    verified = verify(file)
    if as_json:
        emit_json(
            {"lines": verified.lines, "counts": verified.counts, "lastHash": verified.last_hash}
        )
        return
    counts = ", ".join(f"{kind} {n}" for kind, n in sorted(verified.counts.items()))
    typer.echo(f"{file}: intact, {verified.lines} lines ({counts}); last hash {verified.last_hash}")


def register(audit_app: typer.Typer) -> None:
    """Put ``export`` and ``verify`` on the ``audit`` group."""
    audit_app.command("export")(audit_export)
    audit_app.command("verify")(audit_verify)
