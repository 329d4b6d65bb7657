"""A handler's return value becomes its job's result: JSON that Postgres will take, bounded.

The check runs in the attempt, before the outcome is decided, so a result that cannot be
stored fails that attempt like any handler error (for good: retrying returns the same value)
instead of reaching the completing statement, where it would fail the write, possibly with a
whole batch of other jobs' completions, and leave the job ``running`` until its lease ran out.
It encodes exactly as the guard does (compact, key-sorted), so what passes here is what is
written, and the bound counts the bytes Postgres receives.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jobengine.failures import NonRetryableError

DEFAULT_RESULT_MAX_BYTES = 1024 * 1024

ATTACH_HINT = (
    "Return a small summary and store the bulk with ctx.attach(name, data), or raise "
    "JOBENGINE_RESULT_MAX_BYTES."
)

_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
"""``\\u0000`` in encoded JSON that is an escaped NUL, not an escaped backslash before text."""


class ResultNotStorable(NonRetryableError):
    """The handler returned something that is not JSON Postgres can store."""

    code = "RESULT_NOT_JSON"


class ResultTooLarge(NonRetryableError):
    """The handler's result is over ``JOBENGINE_RESULT_MAX_BYTES`` once encoded."""

    code = "RESULT_TOO_LARGE"


def checked_result(value: Any, max_bytes: int = DEFAULT_RESULT_MAX_BYTES) -> Any:
    """``value`` unchanged when it can be stored as the job's result; otherwise the
    non-retryable error that fails the attempt, naming what was wrong and how to fix it."""
    try:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ResultNotStorable(
            f"handler returned a result that is not JSON: {exc}",
            details={
                "hint": "Return only dicts with string keys, lists, strings, numbers, "
                "booleans and None (no NaN or infinity)."
            },
        ) from exc
    if _ESCAPED_NUL.search(text):
        raise ResultNotStorable(
            "handler returned a result with a NUL character (\\u0000), which Postgres cannot "
            "store in JSON",
            details={"hint": "Strip NUL characters, or attach binary data as an artifact."},
        )
    size = len(text.encode())
    if size > max_bytes:
        raise ResultTooLarge(
            f"handler returned a result of {size} bytes as JSON, over the limit of "
            f"{max_bytes} bytes",
            details={"size_bytes": size, "max_bytes": max_bytes, "hint": ATTACH_HINT},
        )
    return value
