"""Handlers for fleet tests, imported by worker processes via JOBENGINE_HANDLER_MODULES.

They record what they did in ``test_effects`` (created by the fixtures) so tests can count
effects per attempt, and they block on ``test_releases`` rows, never on sleeps.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel, Field
from sqlalchemy import text

from jobengine.context import JobContext
from jobengine.store.database import process_engine
from tests.fleet.effects import record_effect
from workers.registry import job

POLL = 0.05


def _engine() -> Any:
    return process_engine(os.environ["JOBENGINE_DATABASE_URL"])


def _released(job_id: int, attempt: int) -> bool:
    with _engine().connect() as conn:
        row = conn.execute(
            text("SELECT 1 FROM test_releases WHERE job_id = :j AND attempt = :a"),
            {"j": job_id, "a": attempt},
        ).first()
    return row is not None


@job("effect")
def effect(ctx: JobContext) -> dict[str, Any]:
    """Records one effect row per run."""
    record_effect(ctx, "ran")
    return {"attempt": ctx.attempt}


@job("always_fails", retry_policy={"max_retries": 3, "base_delay_seconds": 0.2, "jitter": "none"})
def always_fails(ctx: JobContext) -> None:
    record_effect(ctx, "ran")
    raise RuntimeError(f"always fails (attempt {ctx.attempt})")


@job("blocking")
def blocking(ctx: JobContext) -> dict[str, Any]:
    """Blocks the attempts listed in payload['block_attempts'] until released or cancelled."""
    record_effect(ctx, "started")
    if ctx.attempt in ctx.payload.get("block_attempts", []):
        idle = threading.Event()
        while not _released(ctx.job_id, ctx.attempt) and not ctx.cancelled:
            idle.wait(POLL)
    record_effect(ctx, "finished")
    return {"attempt": ctx.attempt, "pid": os.getpid()}


@job("flaky", retry_policy={"max_retries": 3, "base_delay_seconds": 0.2, "jitter": "none"})
def flaky(ctx: JobContext) -> dict[str, Any]:
    """Fails the attempts listed in payload['fail_attempts'], succeeds on the others."""
    record_effect(ctx, "ran")
    if ctx.attempt in ctx.payload.get("fail_attempts", []):
        raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


@job("broken_while_flagged", retry_policy={"max_retries": 0})
def broken_while_flagged(ctx: JobContext) -> dict[str, Any]:
    """Fails (for good: no retries) while a ``test_flags`` row named 'broken' exists, as a
    handler does until the cause of its failures is fixed."""
    with _engine().connect() as conn:
        broken = conn.execute(text("SELECT 1 FROM test_flags WHERE name = 'broken'")).first()
    if broken is not None:
        record_effect(ctx, "failed")
        raise RuntimeError("downstream is broken")
    record_effect(ctx, "ran")
    return {"attempt": ctx.attempt}


class Order(BaseModel):
    order_id: int
    quantity: int = Field(gt=0)


@job("typed_order", payload_model=Order)
def typed_order(ctx: JobContext) -> dict[str, Any]:
    """Declares its payload's shape; gets it decoded as ``ctx.data``."""
    record_effect(ctx, "ran")
    order: Order = ctx.data
    return {"order_id": order.order_id, "quantity": order.quantity}


@job("polite")
def polite(ctx: JobContext) -> None:
    """Runs until its soft time limit, then cleans up and gives up."""
    record_effect(ctx, "started")
    idle = threading.Event()
    try:
        while True:
            idle.wait(POLL)
    except SoftTimeLimitExceeded:
        record_effect(ctx, "cleaned up")
        raise


@job("stubborn")
def stubborn(ctx: JobContext) -> None:
    """Ignores its soft time limit: only the hard limit, killing its process, stops it."""
    record_effect(ctx, "started")
    idle = threading.Event()
    while True:
        try:
            idle.wait(POLL)
        except SoftTimeLimitExceeded:
            record_effect(ctx, "ignored the soft limit")


# ---- sealed mode ------------------------------------------------------------------------
# A recording fake under every socket connect of this process: loopback passes through, any
# other address is recorded and refused here, so no packet can leave even if the guard in
# front of it failed. The guard (installed later by workers.app in sealed mode) wraps this.

FAKE_NET_LOG = os.environ.get("JOBENGINE_TEST_FAKE_NET_LOG")

if FAKE_NET_LOG:
    import ipaddress
    import socket

    _real_connect = socket.socket.connect

    def _fake_connect(self: socket.socket, address: Any) -> None:
        if self.family == socket.AF_UNIX or ipaddress.ip_address(address[0]).is_loopback:
            return _real_connect(self, address)
        with open(FAKE_NET_LOG, "a") as log:
            log.write(f"{address[0]}:{address[1]}\n")
        raise ConnectionRefusedError(f"test fake: no packet to {address[0]}:{address[1]}")

    socket.socket.connect = _fake_connect  # type: ignore[method-assign, assignment]


@job("phone_home")
def phone_home(ctx: JobContext) -> None:
    """Tries to reach a host outside (a documentation address) and one loopback port."""
    import socket

    record_effect(ctx, "started")
    socket.create_connection((ctx.payload["host"], int(ctx.payload["port"])), timeout=2)
    record_effect(ctx, "connected")
