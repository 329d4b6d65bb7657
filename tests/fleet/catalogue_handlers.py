"""Handlers for the catalogue's fleet tests, imported only by worker processes.

Every process that imports this module appends its pid to ``$CATALOGUE_IMPORTS`` (when set),
so a test can prove that its producer, API server and reaper never did. ``$CATALOGUE_VARIANT``
changes the payload model as a redeployed handler module would: ``v1`` (the default), ``v2``
(a stricter schema), ``malformed`` (a schema no validator accepts) or ``unrepresentable`` (a
model pydantic cannot express as JSON Schema at all).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobengine.context import JobContext
from workers.registry import job

if path := os.environ.get("CATALOGUE_IMPORTS"):
    with open(path, "a") as imports:
        imports.write(f"{os.getpid()}\n")

VARIANT = os.environ.get("CATALOGUE_VARIANT", "v1")

HANG_POLICY = {"max_retries": 1, "backoff": "fixed", "base_delay_seconds": 3, "jitter": "none"}
"""Unlike the default policy (3 retries, exponential from 1 s, full jitter) in every respect
a rescue would show."""


class ReportV1(BaseModel):
    rows: int = Field(ge=0)


class ReportV2(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: int = Field(ge=0, le=100)
    title: str


class ReportMalformed(BaseModel):
    model_config = ConfigDict(json_schema_extra={"type": "table"})

    rows: int


class ReportUnrepresentable(BaseModel):
    render: Callable[[int], str]


MODELS: dict[str, type[BaseModel]] = {
    "v1": ReportV1,
    "v2": ReportV2,
    "malformed": ReportMalformed,
    "unrepresentable": ReportUnrepresentable,
}


@job("catalogue_report", payload_model=MODELS[VARIANT])
def catalogue_report(ctx: JobContext) -> dict[str, Any]:
    """Counts the rows it was asked for."""
    return {"rows": ctx.payload["rows"], "variant": VARIANT}


@job("catalogue_hang", retry_policy=HANG_POLICY)
def catalogue_hang(ctx: JobContext) -> None:
    """Runs until its worker is killed, so its lease expires."""
    idle = threading.Event()
    while True:
        ctx.raise_if_cancelled()
        idle.wait(0.05)
