"""An API on a real uvicorn server (loopback, a free port, in a thread) over the test's database.

The app gets its collaborators from here: a publisher that records instead of reaching a
broker (jobs stay undispatched, as after a failed publish), so no test starts a server it
did not ask for. The end-to-end test builds its own app on the real fleet's broker.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from config.settings import Settings
from jobengine.api.app import create_app
from jobengine.api.keys import ApiKeyStore
from jobengine.embedded import free_loopback_port
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import DispatchRef
from tests.fleet.conftest import wait_until


@dataclass
class RecordingPublisher:
    sent: list[int] = field(default_factory=list)

    def publish(self, ref: DispatchRef, countdown: float | None = None) -> None:
        self.sent.append(ref.id)

    def publish_chunk(self, refs: Sequence[DispatchRef]) -> None:
        self.sent.extend(ref.id for ref in refs)


def api_settings(db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "broker_url": "redis://127.0.0.1:9/0",
        "stream_poll_seconds": 0.05,
    }
    values.update(overrides)
    return Settings(**values)


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", ws="websockets-sansio"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_until(lambda: self.server.started, 30, "uvicorn started")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def make_key(engine: Engine, tenant: str, *scopes: str, name: str = "test") -> str:
    with transaction(engine) as conn:
        return ApiKeyStore(conn).create(tenant, name, scopes).plaintext


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def app(db_url: str, engine: Engine, publisher: RecordingPublisher) -> FastAPI:
    return create_app(
        api_settings(db_url),
        engine=engine,
        publisher=publisher,
        revoker=None,
        broker_check=lambda: None,
    )


@pytest.fixture
def live(app: FastAPI) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def writer_key(engine: Engine) -> str:
    return make_key(engine, "acme", "jobs:read", "jobs:write")


@pytest.fixture
def client(live: LiveServer, writer_key: str) -> Iterator[httpx.Client]:
    headers = {**bearer(writer_key), "X-Tenant-Id": "acme"}
    with httpx.Client(base_url=live.url, headers=headers, timeout=30) as c:
        yield c
