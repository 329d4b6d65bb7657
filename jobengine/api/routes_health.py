"""Liveness and readiness, outside ``/api/v1`` so probes need no key."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
from fastapi import APIRouter, Request
from sqlalchemy import Engine

from jobengine.api.errors import ServiceNotReady
from jobengine.api.schemas import ErrorOut, Health
from jobengine.api.state import api_state
from jobengine.store.database import store_error_for

router = APIRouter(tags=["operations"])

READY_CONNECT_TIMEOUT_SECONDS = 2
"""libpq's shortest connect timeout."""
READY_USER_TIMEOUT_MS = 2_000


def _ask_postgres(engine: Engine) -> None:
    """``SELECT 1`` on a connection of the probe's own, bounded by its own timeouts.

    Not through the pool: across hosts, on a link that went silent (no RST, packets just
    vanish), a pooled connection's ping waits for TCP's user timeout (30 s for the API's role)
    and a new connection then for its connect timeout: /readyz took 36.6 s to answer 503
    (tests/chaos/test_hosts.py), longer than any probe waits, holding a request thread all
    along. On loopback a dead server refuses at once: only a fleet across hosts meets this."""
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    kwargs.update(
        connect_timeout=READY_CONNECT_TIMEOUT_SECONDS,
        tcp_user_timeout=READY_USER_TIMEOUT_MS,
    )
    with psycopg.connect(*args, **kwargs, autocommit=True) as conn:
        conn.execute("SELECT 1")


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Health,
    summary="Postgres and Redis are reachable",
    responses={503: {"model": ErrorOut, "description": "The message names what is down."}},
)
def readyz(request: Request) -> Health:
    state = api_state(request)
    down: dict[str, str] = {}
    # Side by side, so a probe that finds both unreachable waits for the longer timeout only.
    with ThreadPoolExecutor(1) as pool:
        broker = pool.submit(state.broker_check)
        try:
            _ask_postgres(state.engine)
        except Exception as exc:
            down["postgres"] = " ".join(str(store_error_for(exc) or exc).split())[:200]
        try:
            broker.result()
        except Exception as exc:
            down["redis"] = " ".join(str(exc).split())[:200]
    if down:
        raise ServiceNotReady(
            "not ready: " + "; ".join(f"{name} is down ({why})" for name, why in down.items()),
            hint="Check that the named server runs and the JOBENGINE_* URL points at it.",
        )
    return Health(checks={"postgres": "ok", "redis": "ok"})
