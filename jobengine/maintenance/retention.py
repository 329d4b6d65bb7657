"""The leader's retention service: fold the outbox into the transition totals every tick, and
prune old rows every ``prune_interval_seconds`` when ``prune_after_seconds`` is set.

Folding each tick keeps a scrape's own fold to the few seconds of events since (see
``store.metrics_repository``). A fold needs no fence: two folds take turns on the cursor row,
so an old leader folding once more counts nothing twice. Each prune batch does take the fence,
so a leader that lost the lease stops deleting at its next batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Connection, Engine

from config.settings import Settings
from jobengine.artifacts.storage import ArtifactStorage, storage_from_url
from jobengine.audit.retention import prune_audit
from jobengine.maintenance.leadership import Leadership
from jobengine.store.metrics_repository import fold_all
from jobengine.store.retention import prune

log = structlog.get_logger("jobengine.maintenance.retention")

FOLD_PAGES_PER_TICK = 20
"""At most this many pages of the outbox per tick; a backlog beyond it is caught up over the
next ticks, so a tick never stalls the other services for long."""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    prune_after_seconds: float | None = None
    """None: never prune (folding still runs)."""
    prune_interval_seconds: float = 600.0
    batch_size: int = 5000
    artifacts: ArtifactStorage | None = None
    """Where the pruned jobs' artifacts' bytes are deleted from."""
    audit_after_days: float | None = None
    """None: audit entries are kept forever (``jobengine.audit.retention``)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(
            prune_after_seconds=settings.prune_after_seconds,
            prune_interval_seconds=settings.prune_interval_seconds,
            batch_size=settings.prune_batch_size,
            artifacts=storage_from_url(settings.artifacts_url, settings.data_dir),
            audit_after_days=settings.audit_retention_days,
        )


class Retention:
    def __init__(
        self,
        engine: Engine,
        leadership: Leadership,
        policy: RetentionPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.leadership = leadership
        self.policy = policy
        self._clock = clock
        self._next_prune = float("-inf")

    def run(self) -> None:
        self.leadership.ensure()
        fold_all(self.engine, max_pages=FOLD_PAGES_PER_TICK)
        after = self.policy.prune_after_seconds
        audit_after = self.policy.audit_after_days
        if (after is None and audit_after is None) or self._clock() < self._next_prune:
            return
        self._next_prune = self._clock() + self.policy.prune_interval_seconds
        if audit_after is not None:
            self._prune_audit(audit_after)
        if after is None:
            return
        report = prune(
            self.engine,
            before=datetime.now(UTC) - timedelta(seconds=after),
            batch=self.policy.batch_size,
            each_batch=self._fenced,
            artifacts=self.policy.artifacts,
        )
        if any(report.removed.values()):
            log.info(
                "pruned",
                before=report.before.isoformat(),
                artifacts=report.artifacts,
                **report.removed,
            )

    def _prune_audit(self, days: float) -> None:
        removed = prune_audit(
            self.engine,
            before=datetime.now(UTC) - timedelta(days=days),
            batch=self.policy.batch_size,
            each_batch=self._fenced,
        )
        if removed:
            log.info("audit.pruned", removed=removed, older_than_days=days)

    def _fenced(self, conn: Connection) -> None:
        self.leadership.ensure()
        self.leadership.fence(conn)
