"""Wiring the fleet's long-running processes: the publisher and the reaper service.

The engine publishes by task name, so it needs a Celery app configured for the broker but
none of the task code in ``workers/``.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from typing import Any

from celery import Celery

from config.celery import celery_config
from config.logging import configure_logging
from config.settings import Settings, get_settings
from jobengine.catalogue import Catalogue
from jobengine.dispatch import CeleryPublisher
from jobengine.execution import Executor
from jobengine.maintenance import Reaper
from jobengine.maintenance.broker_epoch import SOCKET_TIMEOUT_SECONDS
from jobengine.maintenance.retention import RetentionPolicy
from jobengine.redis_clients import broker_client
from jobengine.services import resolve_broker_url, resolve_database_url
from jobengine.store.role_connections import check_reaper_bounds, reaper_engine
from jobengine.store.startup import check_at_start


def publisher_app(settings: Settings, broker_url: str) -> Celery:
    app = Celery("jobengine-producer", set_as_current=False)
    app.config_from_object(celery_config(settings, broker_url))
    return app


def make_publisher(settings: Settings, broker_url: str) -> CeleryPublisher:
    return CeleryPublisher(publisher_app(settings, broker_url))


def run_reaper(settings: Settings | None = None, name: str | None = None) -> None:
    """Serve as a reaper until SIGTERM or SIGINT; leads only while it holds the lease row.

    Nothing the database or the broker does ends it: it waits for a usable schema at start,
    then rides out restarts, terminated connections and full connection slots.
    """
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    stop = threading.Event()

    def _stop(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    database_url = resolve_database_url(settings)[0]
    broker_url = resolve_broker_url(settings)[0]
    engine = reaper_engine(database_url, settings.leader_ttl_seconds)
    try:
        if not check_at_start(settings, "reaper", engine=engine, stop=stop):
            return
        check_reaper_bounds(engine, settings.leader_ttl_seconds)
        reaper = Reaper(
            engine,
            make_publisher(settings, broker_url),
            Executor(engine, lease_ttl_seconds=settings.lease_ttl_seconds, types=Catalogue(engine)),
            name=name or f"reaper@{socket.gethostname()}:{os.getpid()}",
            redispatch_after_seconds=settings.redispatch_after_seconds,
            dispatch_grace_seconds=settings.dispatch_grace_seconds,
            chunk_size=settings.dispatch_chunk_size,
            leader_ttl_seconds=settings.leader_ttl_seconds,
            broker=broker_client(
                broker_url,
                sentinel_master=settings.broker_sentinel_master,
                timeout=SOCKET_TIMEOUT_SECONDS,
            ),
            retention=RetentionPolicy.from_settings(settings),
        )
        reaper.run(stop, settings.reaper_interval_seconds)
    finally:
        engine.dispose()


if __name__ == "__main__":
    run_reaper()
