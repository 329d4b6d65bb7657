"""What the routing and registry tests share: two handler sets, the catalogue rows their types
need, and telling which worker a pool process belongs to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, text

A_ENV = {"JOBENGINE_HANDLER_MODULES": json.dumps(["tests.fleet.handlers_a"])}
B_ENV = {"JOBENGINE_HANDLER_MODULES": json.dumps(["tests.fleet.handlers_b"])}
REGISTRY_ENV = {"JOBENGINE_WORKER_HEARTBEAT_SECONDS": "0.3", "JOBENGINE_WORKER_TTL_SECONDS": "2"}
"""Workers beat fast so a test sees them gone in about two seconds."""
TTL_SECONDS = 2.0


@pytest.fixture(autouse=True)
def cli_keeps_logging_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's first run would bind this process's logs to CliRunner's stderr, closed after
    the call; every later log line of the session would then fail."""
    monkeypatch.setattr("jobengine.cli.configure_logging", lambda *_args, **_kw: None)


def catalogue(engine: Engine, *names: str) -> None:
    """The catalogue rows a worker would upsert at start (the catalogue's part); written here
    so these tests do not depend on which worker started first."""
    with engine.begin() as conn:
        for name in names:
            conn.execute(
                text(
                    "INSERT INTO job_types (name, queue, definition_hash, declared_by) "
                    "VALUES (:n, 'default', 'test', 'test') ON CONFLICT (name) DO NOTHING"
                ),
                {"n": name},
            )


def parent_of(pid: int) -> int:
    """The parent pid of a (live) process: a pool process's parent is its worker."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1])


def waiting_in_broker(broker_url: str, queue: str) -> int:
    """Messages in a broker queue, over all of Redis transport's priority steps."""
    client = redis.Redis.from_url(broker_url)
    try:
        keys = [queue, *(f"{queue}:{step}" for step in range(1, 10))]
        return sum(int(client.llen(key)) for key in keys)
    finally:
        client.close()
