"""Building the API application, and serving it.

``create_app`` takes its collaborators (engine, publisher, revoker, broker check) instead of
finding them, so tests run it against their own database and broker and nothing starts an
embedded server behind their back; ``serve`` is where the real ones are found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from celery import Celery
from fastapi import APIRouter, FastAPI
from sqlalchemy import Engine

from config.logging import configure_logging
from config.settings import Settings
from jobengine import console, tracing
from jobengine.api import (
    errors,
    metrics,
    routes_artifacts,
    routes_audit,
    routes_backfills,
    routes_dlq,
    routes_exports,
    routes_health,
    routes_jobs,
    routes_limits,
    routes_quotas,
    routes_runs,
    routes_schedules,
    routes_streams,
    routes_types,
    routes_workers,
)
from jobengine.api.body_limit import BodyLimit
from jobengine.api.shedding import LoadShedding
from jobengine.api.state import ApiState
from jobengine.artifacts.storage import ArtifactStorage, storage_from_url
from jobengine.audit import rest as audit_rest
from jobengine.cancellation import TaskRevoker
from jobengine.catalogue import Catalogue
from jobengine.dispatch import Publisher
from jobengine.fleet import make_publisher, publisher_app
from jobengine.redis_clients import broker_client
from jobengine.services import broker, database
from jobengine.store.database import make_engine
from jobengine.store.role_connections import with_role_parameters
from jobengine.store.startup import check_at_start, check_host_budget

ROUTERS: list[APIRouter] = [
    routes_health.router,
    metrics.router,
    routes_jobs.router,
    routes_runs.router,
    routes_streams.router,
    routes_dlq.router,
    routes_workers.router,
    routes_types.router,
    routes_limits.router,
    routes_quotas.router,
    routes_quotas.tenant_router,
    routes_artifacts.router,
    routes_backfills.router,
    routes_schedules.router,
    routes_audit.router,
    routes_exports.router,
]
"""Every router the API serves."""

DESCRIPTION = """\
Submit, follow and cancel jobs and runs (workflows of jobs). Every request but `/healthz`,
`/readyz`, `/metrics` and `/openapi.json` needs `Authorization: Bearer je_<prefix>_<secret>`
(`jobengine keys create`). Every error is `{"code", "message", "hint", "retryable"}`.
"""


class CeleryRevoker:
    """Stops a cancelled job's running task through the broker."""

    def __init__(self, app: Celery) -> None:
        self._control = app.control

    def revoke(self, task_id: str, *, terminate: bool = False, signal: str = "SIGTERM") -> None:
        self._control.revoke(task_id, terminate=terminate, signal=signal)


def redis_check(broker_url: str, sentinel_master: str | None = None) -> Callable[[], None]:
    """``/readyz``'s broker check: a ping of the master (through the sentinels, with one)."""

    def ping() -> None:
        client: Any = broker_client(broker_url, sentinel_master=sentinel_master, timeout=1)
        try:
            client.ping()
        finally:
            client.close()

    return ping


def create_app(
    settings: Settings,
    *,
    engine: Engine,
    publisher: Publisher,
    revoker: TaskRevoker | None,
    broker_check: Callable[[], None],
    artifacts: ArtifactStorage | None = None,
) -> FastAPI:
    """``artifacts`` defaults to the storage ``JOBENGINE_ARTIFACTS_URL`` names."""
    app = FastAPI(
        title="jobengine",
        version="1",
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.jobengine = ApiState(
        settings=settings,
        engine=engine,
        publisher=publisher,
        revoker=revoker,
        broker_check=broker_check,
        metrics=metrics.make_registry(engine, settings.worker_ttl_seconds),
        types=Catalogue(engine),
        artifacts=artifacts or storage_from_url(settings.artifacts_url, settings.data_dir),
    )
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(LoadShedding, max_in_flight=settings.api_max_in_flight)
    if tracing.configure("jobengine-api") and not tracing.FASTAPI_TRACES_REQUESTS:
        app.add_middleware(tracing.ServerSpans)
    for router in ROUTERS:
        app.include_router(router)
    console.install(app)  # after errors.install: console pages turn its errors into pages
    audit_rest.install(app)  # outermost: refused audited acts are filed, then answered
    return app


@contextmanager
def production_app(settings: Settings) -> Iterator[FastAPI]:
    """The app on the configured (or embedded) Postgres and Redis, cleaned up after."""
    with database(settings) as (db_url, _pg), broker(settings) as (broker_url, _redis):
        share = check_host_budget(settings, "api")  # exits, saying why, when exceeded
        engine = make_engine(
            db_url,
            pool_size=share.api_pool_size,
            max_overflow=share.api_max_overflow,
            pool_timeout=settings.api_pool_timeout_seconds,
        )
        try:
            yield create_app(
                settings,
                engine=engine,
                publisher=make_publisher(settings, broker_url),
                revoker=CeleryRevoker(publisher_app(settings, broker_url)),
                broker_check=redis_check(broker_url, settings.broker_sentinel_master),
            )
        finally:
            engine.dispose()


def serve_configured(settings: Settings) -> None:
    """What ``jobengine api`` and ``python -m jobengine.api`` both do: with a configured
    database, wait for it to be usable and check the connection budget, then serve with the
    API role's connection parameters (named ``jobengine-api``, kept alive)."""
    configure_logging(settings.log_level, settings.log_json)
    if settings.database_url:
        check_at_start(settings, "api")
        url = with_role_parameters(settings.database_url, "api")
        settings = settings.model_copy(update={"database_url": url})
    serve(settings)


def serve(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM (uvicorn's own handling)."""
    with production_app(settings) as app:
        uvicorn.run(
            app,
            host=settings.api_host,
            port=settings.api_port,
            log_config=None,
            proxy_headers=True,
            ws_ping_interval=20,
        )
