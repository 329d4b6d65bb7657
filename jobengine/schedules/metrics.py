"""The schedules on ``/metrics``: slots decided by outcome, and schedules active or paused.

Read at scrape time from the schedules' own counts (one row per schedule), so a scrape costs
the same however many slots have been decided. The slot totals are sums over the schedules
that exist: deleting a schedule takes its slots out of them, which Prometheus reads as a
counter reset.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from jobengine.store import schedule_queries as q
from jobengine.store.database import transaction


class ScheduleCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        slots = CounterMetricFamily(
            "jobengine_schedule_slots",
            "Schedules' slots decided, by outcome (fired: a job or a run was created; skipped:"
            " missed, overlap or refused).",
            labels=["outcome"],
        )
        schedules = GaugeMetricFamily(
            "jobengine_schedules", "Schedules by state.", labels=["state"]
        )
        with transaction(self._engine) as conn:
            row = conn.exec_driver_sql(q.SLOT_TOTALS).mappings().one()
        slots.add_metric(["fired"], row["fired"])
        slots.add_metric(["skipped"], row["skipped"])
        schedules.add_metric(["active"], row["schedules"] - row["paused"])
        schedules.add_metric(["paused"], row["paused"])
        yield from (slots, schedules)
