"""Per-process resources of a worker: made on first use in the process that uses them.

A prefork pool forks children from the main worker process; nothing here may be created
before the fork and shared, so everything hangs off the current pid.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache

from config.settings import Settings, get_settings
from jobengine.execution import Executor
from jobengine.lease import LeaseKeeper
from jobengine.services import resolve_broker_url, resolve_database_url
from jobengine.store.database import process_engine


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    executor: Executor
    keeper: LeaseKeeper
    owner: str
    """This process's name in leases and history: host and pid."""


@cache
def urls() -> tuple[str, str]:
    """The servers' URLs; embedded servers this starts are left running for the others."""
    settings = get_settings()
    return resolve_database_url(settings)[0], resolve_broker_url(settings)[0]


@cache
def _runtime_for(pid: int) -> Runtime:
    settings = get_settings()
    engine = process_engine(urls()[0])
    return Runtime(
        settings=settings,
        executor=Executor(engine, lease_ttl_seconds=settings.lease_ttl_seconds),
        keeper=LeaseKeeper(engine, settings.lease_ttl_seconds, settings.heartbeat_interval_seconds),
        owner=f"{socket.gethostname()}:{pid}",
    )


def runtime() -> Runtime:
    return _runtime_for(os.getpid())
