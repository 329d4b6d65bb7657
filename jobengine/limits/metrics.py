"""The rate limits on ``/metrics``: per limit, tokens now, jobs waiting and the next admission.

Read at scrape time from the busy buckets alone (``store.limits_queries.LIMIT_STATUS``), so a
scrape costs as much as there are buckets ahead of now, never more as history grows.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from jobengine.limits.registry import statuses
from jobengine.store.database import transaction


class RateLimitCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        tokens = GaugeMetricFamily(
            "jobengine_rate_limit_tokens",
            "Tokens now in the emptiest bucket of each rate limit (its burst when all are full).",
            labels=["limit"],
        )
        waiting = GaugeMetricFamily(
            "jobengine_rate_limit_waiting",
            "Units booked beyond each limit's buckets: jobs waiting for it, at one unit a job.",
            labels=["limit"],
        )
        next_admission = GaugeMetricFamily(
            "jobengine_rate_limit_next_admission_timestamp_seconds",
            "When the next job waiting for each limit is admitted (absent when none waits).",
            labels=["limit"],
        )
        with transaction(self._engine) as conn:
            rows = statuses(conn)
        for status in rows:
            tokens.add_metric([status.name], status.tokens)
            waiting.add_metric([status.name], status.waiting)
            if status.next_admission is not None:
                next_admission.add_metric([status.name], status.next_admission.timestamp())
        yield from (tokens, waiting, next_admission)
