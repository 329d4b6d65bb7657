"""A small Server-Sent Events reader for tests: one message (or heartbeat) at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Message:
    id: str | None
    event: str | None
    data: dict[str, Any] | None
    """None for a heartbeat comment."""


def messages(response: httpx.Response) -> Iterator[Message]:
    fields: dict[str, str] = {}
    comment = False
    for line in response.iter_lines():
        if line == "":
            if fields:
                yield Message(fields.get("id"), fields.get("event"), json.loads(fields["data"]))
            elif comment:
                yield Message(None, None, None)
            fields, comment = {}, False
        elif line.startswith(":"):
            comment = True
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
