"""Exports to a file: a new one, or one continued from its last complete line.

An interrupted export leaves a file with no manifest, perhaps ending inside a line. Resuming
reads it once (constant memory: counts and the last line), checks its chain as ``verify``
would, cuts the unfinished line off, and appends from the line after the last complete one,
with the selection and bound its header recorded; the result is the same bytes an
uninterrupted export writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Engine

from jobengine.audit.chain import GENESIS, HEADER, Chain
from jobengine.audit.export import AsOf, Exporter, Position, Selection, stream
from jobengine.audit.verify import ExportBroken, parse_line


@dataclass(frozen=True, slots=True)
class Written:
    lines: int
    """Lines in the file once written (all of them, a resumed file's earlier ones too)."""
    appended: int
    last_hash: str
    as_of: AsOf


@dataclass(frozen=True, slots=True)
class Partial:
    """What an interrupted export's file says about where it stopped."""

    header: dict[str, Any]
    chain: Chain
    position: Position
    complete_bytes: int
    """The length of the file up to its last complete line."""


def _copy(lines: Iterable[bytes], out: BinaryIO) -> int:
    n = 0
    for line in lines:
        out.write(line)
        n += 1
    return n


def write(exporter: Exporter, out: BinaryIO) -> Written:
    chain = Chain()
    n = _copy(stream(exporter, chain, Position()), out)
    return Written(lines=n, appended=n, last_hash=chain.prev, as_of=exporter.as_of)


def read_partial(path: Path) -> Partial:
    chain = Chain()
    header: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    size = 0
    with path.open("rb") as stream_in:
        for number, raw in enumerate(stream_in, start=1):
            if not raw.endswith(b"\n"):
                break  # the line being written when the export stopped
            line = parse_line(number, raw[:-1])
            if line["prev"] != (GENESIS if number == 1 else chain.prev):
                raise ExportBroken(number, "its prev does not match the line before")
            if header is None:
                if line["kind"] != HEADER:
                    raise ExportBroken(1, "the first line is not an export's header")
                header = line
            chain.advance(line["kind"], raw[:-1])
            last = line
            size += len(raw)
    if header is None or last is None:
        raise ExportBroken(1, "the file holds no complete header: start a new export instead")
    return Partial(header, chain, Position.after(last), size)


def resume(engine: Engine, path: Path) -> Written:
    """Continue the export in ``path`` (see the module's docstring)."""
    partial = read_partial(path)
    exporter = Exporter(
        engine,
        Selection.of_record(partial.header["selection"]),
        AsOf.of_record(partial.header["asOf"]),
    )
    before = partial.chain.seq
    with path.open("r+b") as out:
        out.truncate(partial.complete_bytes)
        out.seek(partial.complete_bytes)
        n = _copy(stream(exporter, partial.chain, partial.position), out)
    return Written(lines=before + n, appended=n, last_hash=partial.chain.prev, as_of=exporter.as_of)


def header_of(path: Path) -> dict[str, Any]:
    """The header of an earlier export, to export its range again."""
    with path.open("rb") as stream_in:
        first = stream_in.readline()
    if not first.endswith(b"\n"):
        raise ExportBroken(1, "the file holds no complete header")
    line = parse_line(1, first[:-1])
    if line["kind"] != HEADER:
        raise ExportBroken(1, "the first line is not an export's header")
    return line
