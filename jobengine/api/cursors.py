"""Opaque page cursors, as every listing of the API and the CLI's ``--json`` hands them out.

A cursor names where a page ended (an id) and which listing made it, so one listing's cursor
is refused by another instead of silently paging it from the wrong place. It imports no web
framework: the CLI encodes and reads the same cursors.
"""

from __future__ import annotations

import base64
import binascii
import re

from jobengine.errors import ValidationError

_CURSOR = re.compile(r"^([a-z]\d):(\d{1,19})$")
JOB_CURSOR = "j1"
RUN_CURSOR = "r1"
DEAD_LETTER_CURSOR = "d1"
AUDIT_CURSOR = "a1"


class BadCursor(ValidationError):
    code = "BAD_CURSOR"
    hint = "Pass back the nextCursor of a previous page unchanged, or leave cursor out."


def encode_cursor(after_id: int, kind: str = JOB_CURSOR) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{after_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str = JOB_CURSOR) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    match = _CURSOR.match(text)
    if match is None or match.group(1) != kind or int(match.group(2)) > 2**63 - 1:
        raise BadCursor(f"cursor {cursor[:40]!r} is not one this listing returned")
    return int(match.group(2))
