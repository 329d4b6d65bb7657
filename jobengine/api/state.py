"""What every request handler shares: settings, the engine, the broker's publisher, the
catalogue of job types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from starlette.requests import HTTPConnection

from config.settings import Settings
from jobengine.artifacts.storage import ArtifactStorage
from jobengine.cancellation import TaskRevoker
from jobengine.catalogue import Catalogue
from jobengine.dispatch import Publisher


@dataclass(frozen=True, slots=True)
class ApiState:
    settings: Settings
    engine: Engine
    publisher: Publisher
    revoker: TaskRevoker | None
    """Stops a running job's task on cancel; None leaves it to the heartbeat to notice."""
    broker_check: Callable[[], None]
    """Raises when the broker cannot be reached (``/readyz``)."""
    metrics: CollectorRegistry
    types: Catalogue
    """The fleet's job types: what submissions are judged by, never handler code."""
    artifacts: ArtifactStorage
    """Where artifacts' bytes are read from for downloads."""


def api_state(connection: HTTPConnection) -> ApiState:
    """Works for HTTP requests and WebSockets alike."""
    state: ApiState = connection.app.state.jobengine
    return state
