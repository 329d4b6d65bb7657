"""The console on a live API server (tests/api/conftest.py), and a browser-like client that
logs in with a key and keeps the session cookie."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import Engine

from jobengine import guard
from jobengine.domain.job import Job, NewJob
from jobengine.store.database import transaction
from tests.api.conftest import LiveServer, app, live, make_key, publisher

CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


class Session:
    """A logged-in console session: the cookie jar of one person's browser."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def page(self, path: str, **params: str) -> httpx.Response:
        return self.client.get(path, params=params or None)

    def csrf(self, path: str = "/console/jobs") -> str:
        found = CSRF.search(self.page(path).text)
        assert found, "the page carries no CSRF token"
        return found.group(1)

    def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        return self.client.post(path, data=data)


@pytest.fixture
def login(live: LiveServer) -> Iterator[Callable[[str], Session]]:
    clients: list[httpx.Client] = []

    def log_in(key: str) -> Session:
        client = httpx.Client(base_url=live.url, timeout=30, follow_redirects=False)
        clients.append(client)
        answer = client.post("/console/login", data={"apiKey": key})
        assert answer.status_code == 303, answer.text
        return Session(client)

    yield log_in
    for client in clients:
        client.close()


def jobs_in(engine: Engine, tenant: str, n: int = 1, **fields: object) -> list[Job]:
    with transaction(engine) as conn:
        return guard.create_jobs(
            conn,
            [NewJob(**{"type": "noop", "tenant_id": tenant, **fields}) for _ in range(n)],  # type: ignore[arg-type]
        )


__all__ = ["Session", "app", "jobs_in", "live", "login", "make_key", "publisher"]
