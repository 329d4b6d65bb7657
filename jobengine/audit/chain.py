"""The line format of a provenance export, and the hash chain that links its lines.

An export is NDJSON: every line one JSON object with keys sorted at every depth, no spaces,
ASCII only (``\\uXXXX`` escapes), a final newline after every line. Every line carries
``seq`` (0 for the header, then 1, 2, …) and ``prev``: the SHA-256 hex digest of the previous
line's exact bytes (without its newline); the header's ``prev`` is 64 zeros. Hashing the bytes
as written, not a re-serialisation, is what lets an auditor check the chain in ten lines of
any language, with no JSON canonicaliser of their own. Nothing else in this module reads a
database, so ``verify`` runs with the standard library alone.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FORMAT = "jobengine.provenance/1"
GENESIS = "0" * 64
"""The header's ``prev``: there is no line before it."""

HEADER = "header"
JOB = "job"
HISTORY = "history"
OUTCOME = "outcome"
AUDIT = "audit"
MANIFEST = "manifest"
KINDS = (HEADER, JOB, HISTORY, OUTCOME, AUDIT, MANIFEST)
RESERVED = frozenset({"kind", "seq", "prev"})
"""Keys the chain sets on every line; a record must not bring its own."""


def canonical(document: Any) -> bytes:
    """The one byte form of ``document`` an export writes (and ``verify`` insists on)."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def utc(value: datetime | None) -> str | None:
    """Microseconds and ``Z``, whatever zone the driver gave: two exports never differ by
    how a timestamp was printed. ``isoformat`` pads the year to four digits on every
    platform, which ``strftime`` does not."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"


@dataclass
class Chain:
    """Where an export stands: the next ``seq``, the digest the next line must carry, and
    the lines written so far by kind (what the manifest counts). A resumed export starts
    from the state the file's last complete line left."""

    seq: int = 0
    prev: str = GENESIS
    counts: Counter[str] = field(default_factory=Counter)
    first_hash: str | None = None

    def line(self, kind: str, record: dict[str, Any]) -> bytes:
        """``record`` as the next line, newline included; the chain moves past it."""
        if RESERVED & record.keys():
            raise ValueError(f"a record may not set {sorted(RESERVED & record.keys())}")
        raw = canonical({**record, "kind": kind, "seq": self.seq, "prev": self.prev})
        self.advance(kind, raw)
        return raw + b"\n"

    def advance(self, kind: str, raw: bytes) -> None:
        """Account for a line already written (``raw`` without its newline)."""
        self.prev = digest(raw)
        if self.seq == 0:
            self.first_hash = self.prev
        self.seq += 1
        self.counts[kind] += 1


def manifest_record(header: dict[str, Any], chain: Chain) -> dict[str, Any]:
    """The closing line's fields: what the header promised, and what the chain holds.

    Every field is one ``verify`` recomputes, so a changed byte in the manifest (which no
    later line hashes) is still found."""
    return {
        "format": header["format"],
        "selection": header["selection"],
        "asOf": header["asOf"],
        "engineVersion": header["engineVersion"],
        "counts": dict(sorted(chain.counts.items())),
        "lines": chain.seq + 1,
        "firstHash": chain.first_hash,
        "lastHash": chain.prev,
    }
