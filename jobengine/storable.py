"""What Postgres cannot store in text or jsonb: the NUL character (``\\u0000``).

A NUL reaching a statement fails it with a driver error (``UntranslatableCharacter``, or
psycopg's "cannot contain NUL bytes") that names neither the field nor the fix, so every
way in (REST, the CLI, the Python producer) checks first and says where the NUL is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jobengine.errors import ValidationError

MAX_DEPTH = 64


class NulCharacter(ValidationError):
    code = "NUL_CHARACTER"
    hint = (
        "Postgres cannot store the NUL character (\\u0000) in text or JSON: remove it, or "
        "encode binary data (e.g. base64) before putting it in a payload."
    )


def _nul_paths(value: Any, where: str, depth: int) -> Iterator[str]:
    if depth > MAX_DEPTH:
        raise ValidationError(
            f"{where} is nested more than {MAX_DEPTH} levels deep",
            hint="Flatten the payload, or store it elsewhere and pass a reference.",
        )
    if isinstance(value, str):
        if "\x00" in value:
            yield where
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                yield f"{where} (a key)"
            yield from _nul_paths(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _nul_paths(item, f"{where}[{index}]", depth + 1)


def nul_path(value: Any, where: str) -> str | None:
    """Where the first NUL in ``value`` is, e.g. ``payload.lines[2]``; None when there is none."""
    return next(_nul_paths(value, where, 0), None)


def refuse_nul(fields: dict[str, Any]) -> None:
    """Refuse the first field (name → value) holding a NUL, naming the path inside it."""
    for name, value in fields.items():
        found = nul_path(value, name)
        if found is not None:
            raise NulCharacter(f"{found} contains a NUL character (\\u0000)")
