"""Checking an export offline: the chain, each line's form, and the manifest.

It reads the file once, line by line, holding two lines at a time, so a file of any size
checks in constant memory; it needs no database and no settings. It names the first line
that is not as written: a changed byte in line *n* shows as line *n+1*'s ``prev`` no longer
matching, so a broken link is blamed on the line before it when the line after vouches for
the one that carries it, and on that line itself otherwise (its own ``prev`` was changed).
The manifest, which no later line hashes, is recomputed whole from the header and the chain.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from jobengine.audit.chain import (
    FORMAT,
    GENESIS,
    HEADER,
    KINDS,
    MANIFEST,
    Chain,
    canonical,
    digest,
    manifest_record,
)
from jobengine.errors import JobEngineError


class ExportBroken(JobEngineError):
    """The file is not an intact export: ``line`` (1-based) is the first that is not."""

    code = "EXPORT_BROKEN"
    hint = (
        "The file was changed, truncated or is not an export; re-export the range (the "
        "header's selection and asOf give the same bytes again) and compare."
    )

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True, slots=True)
class Verified:
    lines: int
    counts: dict[str, int]
    last_hash: str
    """The digest of the manifest line: the one value that pins the whole file."""


def _lines(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    number = 0
    for number, raw in enumerate(stream, start=1):
        if not raw.endswith(b"\n"):
            raise ExportBroken(number, "the file ends inside this line (no final newline)")
        yield number, raw[:-1]
    if number == 0:
        raise ExportBroken(1, "the file is empty")


def parse_line(number: int, raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportBroken(number, f"not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ExportBroken(number, "not a JSON object")
    if canonical(document) != raw:
        raise ExportBroken(number, "not in the export's form (sorted keys, no spaces, ASCII)")
    if document.get("seq") != number - 1:
        raise ExportBroken(number, f"seq is {document.get('seq')!r}, expected {number - 1}")
    if document.get("kind") not in KINDS:
        raise ExportBroken(number, f"unknown kind {document.get('kind')!r}")
    if not isinstance(document.get("prev"), str):
        raise ExportBroken(number, "prev is missing")
    return document


def _check_header(document: dict[str, Any]) -> None:
    if document["kind"] != HEADER:
        raise ExportBroken(1, f"the first line is a {document['kind']!r}, not the header")
    if document.get("format") != FORMAT:
        raise ExportBroken(1, f"format is {document.get('format')!r}, expected {FORMAT!r}")
    if document["prev"] != GENESIS:
        raise ExportBroken(1, "the header's prev is not 64 zeros")


def _check_manifest(
    number: int, document: dict[str, Any], header: dict[str, Any], chain: Chain
) -> None:
    expected = manifest_record(header, chain)
    found = {k: v for k, v in document.items() if k not in ("kind", "seq", "prev")}
    for key in sorted(expected.keys() | found.keys()):
        if found.get(key) != expected.get(key):
            raise ExportBroken(
                number,
                f"the manifest's {key} is {found.get(key)!r}, the file gives {expected.get(key)!r}",
            )


@dataclass(frozen=True, slots=True)
class _Suspect:
    """A line whose ``prev`` did not match the line before: it or that line was changed."""

    number: int
    recorded: str
    expected: str

    def blame(self, vouched: bool) -> ExportBroken:
        """``vouched``: the next line's ``prev`` matches the suspect's bytes as they are, so
        the suspect is intact and the line before it changed."""
        if vouched:
            return ExportBroken(
                self.number - 1,
                f"its bytes hash to {self.expected}, but line {self.number} recorded "
                f"{self.recorded}",
            )
        return ExportBroken(
            self.number,
            f"prev is {self.recorded}, but line {self.number - 1} hashes to {self.expected}",
        )


def verify_stream(stream: BinaryIO) -> Verified:
    lines = _lines(stream)
    number, raw = next(lines)
    header = parse_line(number, raw)
    _check_header(header)
    chain = Chain()
    chain.advance(HEADER, raw)
    before, document = raw, header
    suspect: _Suspect | None = None
    for number, raw in lines:
        if document["kind"] == MANIFEST:
            raise ExportBroken(number, "a line after the manifest")
        try:
            document = parse_line(number, raw)
        except ExportBroken:
            if suspect is not None:
                raise suspect.blame(vouched=False) from None
            raise
        if suspect is not None:
            raise suspect.blame(vouched=document["prev"] == digest(before))
        if document["kind"] == HEADER:
            raise ExportBroken(number, "a second header")
        if document["prev"] != chain.prev:
            suspect = _Suspect(number, document["prev"], chain.prev)
            if document["kind"] == MANIFEST:  # no line follows: its lastHash is the witness
                raise suspect.blame(vouched=document.get("lastHash") == document["prev"])
        elif document["kind"] == MANIFEST:
            _check_manifest(number, document, header, chain)
        chain.advance(document["kind"], raw)
        before = raw
    if suspect is not None:
        raise suspect.blame(vouched=False)
    if document["kind"] != MANIFEST:
        raise ExportBroken(number + 1, "the manifest is missing (the export was cut short)")
    return Verified(lines=chain.seq, counts=dict(chain.counts), last_hash=chain.prev)


def verify(path: Path) -> Verified:
    with path.open("rb") as stream:
        return verify_stream(stream)
