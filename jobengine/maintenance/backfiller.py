"""The backfiller: each tick, one bounded batch of backfill slots, then the watermarks.

Bounded so the leader's other services keep their cadence: at most ``BATCH`` slots a tick
across every backfill still creating (each in a transaction of its own, fenced as the
leader's), and one page of slot rows per source whose watermark may move. A tick that used
its whole budget asks to run again within ``WAKE_SECONDS`` rather than a full interval, so a
100,000-slot backfill is created in about a hundred short ticks with promotion, rescue and
dispatch run between every two. A backfill whose batch raises (a quota, a type gone from the
catalogue) has the error recorded as its ``last_error`` and is tried again next tick; the
others go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

import structlog
from sqlalchemy import Engine

from jobengine.backfills import watermark
from jobengine.backfills.creation import Batch, create_batch
from jobengine.backfills.repository import BackfillRepository
from jobengine.catalogue import catalogue_of
from jobengine.errors import JobEngineError
from jobengine.job_types import JobTypes
from jobengine.maintenance.leadership import Leadership, LeadershipLost
from jobengine.maintenance.report import TickReport
from jobengine.store.backoff import is_transient
from jobengine.store.database import retrying, transaction

log = structlog.get_logger("jobengine.maintenance.backfiller")

BATCH = 1_000
"""Slots walked per tick, across every backfill."""
BACKFILLS_PER_TICK = 50
SOURCES_PER_TICK = 100
WAKE_SECONDS = 0.05


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Backfiller:
    def __init__(
        self,
        engine: Engine,
        leadership: Leadership,
        *,
        actor: str,
        clock: Callable[[], datetime] = _utcnow,
        batch: int = BATCH,
        types: JobTypes | None = None,
    ) -> None:
        self.engine = engine
        self.leadership = leadership
        self.actor = actor
        self.clock = clock
        self.batch = batch
        self.types = types
        """The catalogue slot jobs are judged by; None: this process's, read from Postgres."""
        self.tick_seconds: list[float] = []
        """How long each run took (kept for the last 1,000 runs): what the bench reports."""

    def run(self, report: TickReport) -> None:
        started = time.perf_counter()
        self.leadership.ensure()
        with transaction(self.engine) as conn:
            ids = BackfillRepository(conn).creating(BACKFILLS_PER_TICK)
        budget = self.batch
        for backfill_id in ids:
            if budget <= 0:
                break
            batch = self._one(backfill_id, budget)
            report.backfilled.extend(batch.created)
            budget -= batch.walked
        walk_more = self._watermarks()
        if budget <= 0 or walk_more:
            wake = report.wake_in_seconds
            report.wake_in_seconds = WAKE_SECONDS if wake is None else min(wake, WAKE_SECONDS)
        self.tick_seconds = [*self.tick_seconds[-999:], time.perf_counter() - started]

    def _one(self, backfill_id: int, budget: int) -> Batch:
        self.leadership.ensure()
        try:
            return retrying(partial(self._batch, backfill_id, budget), what="backfill", attempts=3)
        except LeadershipLost:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise
            error = (
                f"{exc.code}: {exc.message}"
                if isinstance(exc, JobEngineError)
                else f"{type(exc).__name__}: {exc}"
            )
            log.warning("backfill_batch_failed", backfill_id=backfill_id, error=str(exc))
            with transaction(self.engine) as conn:
                BackfillRepository(conn).record_error(backfill_id, error)
            return Batch()

    def _batch(self, backfill_id: int, budget: int) -> Batch:
        with transaction(self.engine) as conn:
            self.leadership.fence(conn)
            return create_batch(
                conn,
                backfill_id,
                budget=budget,
                now=self.clock(),
                types=self.types if self.types is not None else catalogue_of(conn),
                actor=self.actor,
            )

    def _watermarks(self) -> bool:
        """Walk every source whose watermark may move; True when one has more to walk."""
        self.leadership.ensure()
        more = False
        with transaction(self.engine) as conn:
            self.leadership.fence(conn)
            for source in BackfillRepository(conn).sources_behind(SOURCES_PER_TICK):
                more = watermark.walk(conn, source).more or more
        return more
