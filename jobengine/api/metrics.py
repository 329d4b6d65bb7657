"""``/metrics`` in Prometheus's text format.

The engine's figures are read from Postgres at scrape time by a custom collector, not counted
in this process: several API processes behind one balancer then report the same numbers, and a
restart loses nothing. Nothing a scrape reads grows with history: transitions, lease expiries
and retries are totals folded from the outbox (a scrape first folds what arrived since the
leader's last fold, a page at most), live states are counted through partial indexes and final
states come from the totals (see ``store.metrics_repository``). Runs by status are counted
from ``runs``: one row per run kept, however many jobs each holds. Transition latency is the one
figure measured here: a histogram of the guard calls this process makes (submissions and
cancellations), per process as latency naturally is. Wait and run times are histograms too,
but of the whole fleet: each start and each attempt's end carries its duration in its outbox
event, and the fold adds it to a bucket row per queue (``duration_totals``), so every worker
process counts, a restart loses nothing and a scrape reads a few rows per queue.

The fleet's side comes from the workers registry, with the same TTL as every other reader:
workers by state, and for each type whose due jobs no live worker handles, how many wait and
for how long the oldest has (``jobengine_types_without_worker``: alert on it). The rate
limits report their own gauges (``jobengine.limits.metrics``), the schedules their slots
(``jobengine.schedules.metrics``).
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from jobengine.api.state import api_state
from jobengine.domain.status import JobStatus
from jobengine.limits.metrics import RateLimitCollector
from jobengine.quotas.metrics import QuotaCollector
from jobengine.schedules.metrics import ScheduleCollector
from jobengine.store import queries
from jobengine.store.database import run_all, transaction
from jobengine.store.dead_letter_repository import DeadLetterRepository
from jobengine.store.metrics_repository import DurationHistogram, MetricsRepository, fold_page
from jobengine.store.workers_repository import WorkersRepository

GUARD_SECONDS = Histogram(
    "jobengine_api_guard_seconds",
    "Seconds this API process spent in guarded writes (store, transition, commit).",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=None,
)


class EngineCollector(Collector):
    """Reads the engine's state from Postgres on every scrape."""

    def __init__(self, engine: Engine, worker_ttl_seconds: float) -> None:
        self._engine = engine
        self._worker_ttl = worker_ttl_seconds

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("jobengine_jobs", "Jobs by state.", labels=["state"])
        depth = GaugeMetricFamily(
            "jobengine_queue_depth", "Scheduled jobs waiting, by queue.", labels=["queue"]
        )
        lag = GaugeMetricFamily(
            "jobengine_queue_oldest_waiting_seconds",
            "How long each queue's oldest due job has waited for a worker: the queue's lag.",
            labels=["queue"],
        )
        transitions = CounterMetricFamily(
            "jobengine_transitions",
            "Transitions recorded, by step (folded from the outbox; retention keeps them).",
            labels=["from_state", "to_state"],
        )
        lease_expiries = CounterMetricFamily(
            "jobengine_lease_expiries", "Leases the reaper took back (missed heartbeats)."
        )
        retries = CounterMetricFamily(
            "jobengine_retries", "failed -> scheduled steps: retries granted and replays."
        )
        dead = GaugeMetricFamily(
            "jobengine_dead_letters_open", "Open dead letters.", labels=["reason", "type"]
        )
        workers = GaugeMetricFamily(
            "jobengine_workers", "Registered workers by state.", labels=["state"]
        )
        unhandled = GaugeMetricFamily(
            "jobengine_types_without_worker",
            "Due scheduled jobs of a type that no live worker handles, by type.",
            labels=["type"],
        )
        unhandled_age = GaugeMetricFamily(
            "jobengine_types_without_worker_oldest_seconds",
            "How long the oldest due job of a type no live worker handles has waited.",
            labels=["type"],
        )
        runs = GaugeMetricFamily("jobengine_runs", "Runs by status.", labels=["status"])
        fold_page(self._engine)
        with transaction(self._engine) as conn:
            registry = WorkersRepository(conn)
            fleet = registry.workers(ttl_seconds=self._worker_ttl, include_gone=True)
            waiting = registry.types_without_worker(ttl_seconds=self._worker_ttl)
            figures = MetricsRepository(conn)
            by_state: dict[JobStatus, int] = figures.live_jobs()
            totals = figures.totals()
            queue_rows = run_all(conn, queries.QUEUE_DEPTH, {})
            dead_counts = DeadLetterRepository(conn).counts()
            run_counts = figures.runs()
            durations = figures.durations()
        by_state.update(totals.final_jobs())
        for status in JobStatus:
            jobs.add_metric([status.value], by_state.get(status, 0))
        for r in queue_rows:
            depth.add_metric([r["queue"]], r["waiting"])
            lag.add_metric([r["queue"]], r["oldest_waiting_seconds"])
        expired = retried = 0
        for step in totals.steps:
            transitions.add_metric([step.from_status, step.to_status], step.n)
            expired += step.lease_expired
            if (step.from_status, step.to_status) == ("failed", "scheduled"):
                retried += step.n
        lease_expiries.add_metric([], expired)
        retries.add_metric([], retried)
        for c in dead_counts:
            dead.add_metric([c.reason.value, c.type], c.count)
        for state in ("live", "draining", "gone"):
            workers.add_metric([state], sum(1 for w in fleet if w.state == state))
        for t in waiting:
            unhandled.add_metric([t.type], t.waiting)
            unhandled_age.add_metric([t.type], t.oldest_waiting_seconds)
        for run_status, n in run_counts.items():
            runs.add_metric([run_status.value], n)
        yield from (jobs, depth, lag, transitions, lease_expiries, retries, dead, runs)
        yield from (workers, unhandled, unhandled_age)
        yield from duration_histograms(durations)


# ---- wait and run time histograms (folded from the outbox: store.metrics_repository) -------


def duration_histograms(durations: list[DurationHistogram]) -> Iterator[Metric]:
    """By queue, not by type: queues are few and chosen by operators, types grow with the
    catalogue, and each label value costs 22 series here."""
    waits = HistogramMetricFamily(
        "jobengine_job_wait_seconds",
        "Seconds from a job being due (scheduled, or its not_before) to its attempt starting.",
        labels=["queue"],
    )
    runs = HistogramMetricFamily(
        "jobengine_job_run_seconds",
        "Seconds from an attempt starting to its end, by how it ended.",
        labels=["queue", "outcome"],
    )
    for h in durations:
        if h.kind == "wait":
            waits.add_metric([h.queue], h.cumulative(), h.seconds)
        else:
            runs.add_metric([h.queue, h.outcome], h.cumulative(), h.seconds)
    yield from (waits, runs)


def make_registry(engine: Engine, worker_ttl_seconds: float) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(engine, worker_ttl_seconds))
    registry.register(RateLimitCollector(engine))
    registry.register(QuotaCollector(engine))
    registry.register(ScheduleCollector(engine))
    registry.register(GUARD_SECONDS)
    return registry


router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
def metrics(request: Request) -> Response:
    return Response(generate_latest(api_state(request).metrics), media_type=CONTENT_TYPE_LATEST)
