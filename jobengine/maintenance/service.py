"""The maintenance service: while this process leads, run each service once per tick.

The loop outlives its database and its broker. Whatever a tick raises (Postgres restarting,
a terminated backend, no free connection slot, a bug) costs one log line and a capped,
jittered wait, and leadership is given up at once, since it can no longer be proven; the next
tick reconnects through the pool and tries again. Only ``stop`` (SIGTERM, SIGINT) ends it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime

import redis
import structlog
from sqlalchemy import Engine

from jobengine.dispatch import Publisher
from jobengine.execution import Executor
from jobengine.maintenance.broker_epoch import BrokerEpoch
from jobengine.maintenance.dispatcher import Dispatcher
from jobengine.maintenance.leadership import Leadership, LeadershipLost
from jobengine.maintenance.promoter import Promoter
from jobengine.maintenance.report import SetAside, TickReport
from jobengine.maintenance.rescuer import Rescuer
from jobengine.maintenance.retention import Retention, RetentionPolicy
from jobengine.maintenance.scheduler import Scheduler, utc_now
from jobengine.quotas.fair import FILL_SECONDS
from jobengine.store.backoff import Backoff

log = structlog.get_logger("jobengine.reaper")

MAX_BACKOFF_SECONDS = 30.0
MIN_WAKE_SECONDS = 0.02
"""The shortest wait between ticks when the promoter asks to run sooner than the interval."""
SAMPLE = 20
"""Job ids named in a tick's log line; the counts are complete."""


class Reaper:
    def __init__(
        self,
        engine: Engine,
        publisher: Publisher,
        executor: Executor,
        *,
        name: str,
        redispatch_after_seconds: float,
        dispatch_grace_seconds: float,
        chunk_size: int = 1,
        leader_ttl_seconds: float = 15.0,
        broker: redis.Redis | None = None,
        retention: RetentionPolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """``clock`` is the schedules' time (their slots come by it); tests drive it."""
        self.engine = engine
        self.name = name
        self.leadership = Leadership(engine, holder_name(name), leader_ttl_seconds)
        self.set_aside = SetAside()
        self.rescuer = Rescuer(engine, executor, self.leadership, self.set_aside, actor=name)
        self.scheduler = Scheduler(engine, publisher, self.leadership, actor=name, clock=clock)
        self.promoter = Promoter(engine, self.leadership, self.set_aside, actor=name)
        self.broker_epoch = None if broker is None else BrokerEpoch(broker, engine, self.leadership)
        self.dispatcher = Dispatcher(
            engine,
            publisher,
            self.leadership,
            grace_seconds=dispatch_grace_seconds,
            redispatch_after_seconds=redispatch_after_seconds,
            chunk_size=chunk_size,
        )
        self.retention = Retention(engine, self.leadership, retention or RetentionPolicy())

    def tick(self) -> TickReport:
        """One round of maintenance if this reaper leads (or wins the lease); else nothing."""
        if not self.leadership.acquire():
            return TickReport(leader=False)
        report = TickReport(leader=True)
        try:
            self.rescuer.run(report)
            self.scheduler.run(report)  # before the promoter: a jittered slot may be due
            self.promoter.run(report)
            if self.broker_epoch is not None:
                self.broker_epoch.run(report)
            self.dispatcher.run(report)
            self.retention.run()
        except LeadershipLost as exc:
            report.leader = False
            log.warning("maintenance_stopped", reaper=self.name, why=str(exc))
        if (
            any((report.rescued, report.returned, report.promoted, report.redispatched))
            or report.fired
            or report.slots_skipped
            or report.forgotten
            or report.set_aside
        ):
            log.info(
                "reaper_tick",
                reaper=self.name,
                rescued=len(report.rescued),
                returned=len(report.returned),
                promoted=len(report.promoted),
                dispatched=len(report.dispatched),
                redispatched=len(report.redispatched),
                forgotten=report.forgotten,
                set_aside=report.set_aside,
                fired=len(report.fired),
                slots_skipped=report.slots_skipped,
                rescued_first=report.rescued[:SAMPLE],
            )
        return report

    def run(self, stop: threading.Event, interval_seconds: float) -> None:
        """Tick until ``stop`` is set; a failing tick is logged and retried after a backoff.

        The backoff stays under half the leader TTL, so a follower that kept failing while
        the leader lived still takes over within about a TTL once the leader is gone.
        """
        cap = min(MAX_BACKOFF_SECONDS, max(interval_seconds, self.leadership.ttl_seconds / 2))
        backoff = Backoff(interval_seconds, cap)
        try:
            while not stop.is_set():
                try:
                    report = self.tick()
                except Exception as exc:  # the loop must outlive anything a tick can raise
                    self.leadership.step_down("the tick failed")
                    wait = backoff.next()
                    log.warning(
                        "reaper_tick_failed",
                        reaper=self.name,
                        error=f"{type(exc).__name__}: {_first_line(exc)}",
                        failures=backoff.failures,
                        retry_in_seconds=round(wait, 2),
                    )
                    stop.wait(wait)
                    continue
                backoff.reset()
                self._between_ticks(stop, _wait(report, interval_seconds))
        finally:
            self.leadership.release()

    def _between_ticks(self, stop: threading.Event, interval_seconds: float) -> None:
        """Wait for the next tick; while leading with a fair-shared queue or a capped tenant,
        refill windows and admit into freed slots every ``FILL_SECONDS`` meanwhile (a fair
        queue's throughput is a window per fill). A failing run only ends these until the
        next tick, which reports what is wrong."""
        deadline = time.monotonic() + interval_seconds
        quick = (self.dispatcher.fair, self.dispatcher.caps)
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            due = [service for service in quick if service.active]
            if not (due and self.leadership.leading()):
                stop.wait(left)
                return
            try:
                for service in due:
                    service.run()
            except Exception as exc:  # the tick that follows retries and reports
                log.warning("quick_dispatch_failed", reaper=self.name, error=_first_line(exc))
                stop.wait(left)
                return
            stop.wait(min(left, FILL_SECONDS))


def _wait(report: TickReport, interval_seconds: float) -> float:
    """The interval, or less when a pending job (see ``promoter``) or a schedule's slot
    comes due before it."""
    wakes = (report.wake_in_seconds, report.next_slot_in_seconds)
    wake = min((w for w in wakes if w is not None), default=None)
    if wake is None:
        return interval_seconds
    return min(interval_seconds, max(wake, MIN_WAKE_SECONDS))


def holder_name(name: str) -> str:
    """The name this process holds the lease by: its reaper name and a nonce of its own, so
    two processes given the same name (a copied unit, a restart before the old one died)
    are two holders, and never both leaders."""
    return f"{name}#{secrets.token_hex(4)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
