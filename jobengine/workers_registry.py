"""The read side of the workers registry: which workers are live, and which types wait for one.

The CLI, the API and ``/metrics`` read it through here so they apply the same TTL
(``JOBENGINE_WORKER_TTL_SECONDS``) and say the same thing about the same fleet. Workers write
their own rows (``workers.presence``).
"""

from __future__ import annotations

from sqlalchemy import Engine

from jobengine.store.database import transaction
from jobengine.store.workers_repository import TypeWithoutWorker, WorkersRepository, WorkerView


class WorkersRegistry:
    def __init__(self, engine: Engine, ttl_seconds: float) -> None:
        self._engine = engine
        self.ttl_seconds = ttl_seconds

    def workers(self, *, include_gone: bool = False) -> list[WorkerView]:
        """Live and draining workers by name; with ``include_gone``, gone ones too."""
        with transaction(self._engine) as conn:
            return WorkersRepository(conn).workers(
                ttl_seconds=self.ttl_seconds, include_gone=include_gone
            )

    def types_without_worker(self) -> list[TypeWithoutWorker]:
        """Types with due jobs that no live, non-draining worker handles, with their wait."""
        with transaction(self._engine) as conn:
            return WorkersRepository(conn).types_without_worker(ttl_seconds=self.ttl_seconds)
