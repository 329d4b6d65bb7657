"""Per-process resources of a worker: made on first use in the process that uses them.

A prefork pool forks children from the main worker process; nothing here may be created
before the fork and shared, so everything hangs off the current pid. A process holds one
lasting Postgres connection (``SharedConnection``) for claims, outcomes, limits and heartbeats,
named ``jobengine-worker:<pid>`` in ``pg_stat_activity``; the main process opens it only when
it records something (a hard time limit, a revoke, a poison message).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache

from config.settings import Settings, get_settings
from jobengine import tracing
from jobengine.admission import Admission, AdmissionPolicy
from jobengine.artifacts.attach import Attacher
from jobengine.artifacts.storage import storage_from_url
from jobengine.attempt import Attempts
from jobengine.completer import Completer
from jobengine.execution import Executor
from jobengine.lease import LeaseKeeper
from jobengine.services import resolve_broker_url, resolve_database_url
from jobengine.store.database import SharedConnection, unpooled_engine
from workers.deferral import MAX_BACKOFF_SECONDS, ClaimDeferral

APPLICATION_NAME = "jobengine-worker"


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    connection: SharedConnection
    executor: Executor
    keeper: LeaseKeeper
    attempts: Attempts
    completer: Completer
    """Batches this process's completions; flushed before the process exits."""
    deferral: ClaimDeferral
    """How this process gives messages back while its claims cannot reach Postgres."""
    owner: str
    """This process's name in leases and history: host and pid."""


@cache
def urls() -> tuple[str, str]:
    """The servers' URLs; embedded servers this starts are left running for the others."""
    settings = get_settings()
    return resolve_database_url(settings)[0], resolve_broker_url(settings)[0]


_started: set[int] = set()


def owner_of(pid: int) -> str:
    """The name a process of this host holds leases under, and signs history with."""
    return f"{socket.gethostname()}:{pid}"


def admission_of(settings: Settings) -> Admission:
    """This process's claim pacing, as the settings ask."""
    policy = AdmissionPolicy(
        enabled=settings.claim_admission,
        slow_claim_seconds=settings.claim_admission_slow_seconds,
    )
    return Admission(policy)


@cache
def _runtime_for(pid: int) -> Runtime:
    _started.add(pid)
    tracing.configure("jobengine-worker")  # per process, after the fork: its exporter's thread
    settings = get_settings()
    engine = unpooled_engine(urls()[0], application_name=f"{APPLICATION_NAME}:{pid}")
    connection = SharedConnection(engine)
    executor = Executor(
        engine,
        lease_ttl_seconds=settings.lease_ttl_seconds,
        connection=connection,
        admission=admission_of(settings),
    )
    keeper = LeaseKeeper(
        connection, settings.lease_ttl_seconds, settings.heartbeat_interval_seconds
    )
    owner = owner_of(pid)
    completer = Completer(
        executor,
        flush_after_seconds=settings.completion_flush_seconds,
        max_batch=settings.completion_batch,
    )
    return Runtime(
        settings=settings,
        connection=connection,
        executor=executor,
        keeper=keeper,
        attempts=Attempts(
            executor,
            keeper,
            owner,
            eta_limit_seconds=settings.eta_limit_seconds,
            completer=completer,
            result_max_bytes=settings.result_max_bytes,
            attacher=Attacher(
                storage_from_url(settings.artifacts_url, settings.data_dir),
                connection,
                max_bytes=settings.artifact_max_bytes,
                write_deadline_seconds=executor.write_deadline_seconds,
            ),
        ),
        completer=completer,
        deferral=ClaimDeferral(min(MAX_BACKOFF_SECONDS, settings.lease_ttl_seconds)),
        owner=owner,
    )


def runtime() -> Runtime:
    return _runtime_for(os.getpid())


def started_here() -> bool:
    """Whether this process made its runtime (so has anything of its own to flush)."""
    return os.getpid() in _started
