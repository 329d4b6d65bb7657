"""Liveness and readiness, outside ``/api/v1`` so probes need no key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text

from jobengine.api.errors import ServiceNotReady
from jobengine.api.schemas import ErrorOut, Health
from jobengine.api.state import api_state
from jobengine.store.database import transaction

router = APIRouter(tags=["operations"])


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
    try:
        with transaction(state.engine) as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        down["postgres"] = " ".join(str(exc).split())[:200]
    try:
        state.broker_check()
    except Exception as exc:
        down["redis"] = " ".join(str(exc).split())[:200]
    if down:
        raise ServiceNotReady(
            "not ready: " + "; ".join(f"{name} is down ({why})" for name, why in down.items()),
            hint="Check that the named server runs and the JOBENGINE_* URL points at it.",
        )
    return Health(checks={"postgres": "ok", "redis": "ok"})
