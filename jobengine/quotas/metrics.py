"""``/metrics`` figures of quotas and fair shares, read from Postgres at scrape time.

Only tenants with a quota row and fair-shared queues are reported, so the series stay as many
as the rows an operator created, not as many as there are tenants.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from jobengine.quotas.book import QuotaRepository
from jobengine.store.database import transaction


class QuotaCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        tenant = ["tenant"]
        limit = GaugeMetricFamily(
            "jobengine_tenant_quota_max_queued", "A tenant's quota of queued jobs.", labels=tenant
        )
        cap = GaugeMetricFamily(
            "jobengine_tenant_cap_max_running",
            "A tenant's cap on jobs claimed or running at once.",
            labels=tenant,
        )
        queued = GaugeMetricFamily(
            "jobengine_tenant_queued", "A tenant's jobs pending or scheduled.", labels=tenant
        )
        running = GaugeMetricFamily(
            "jobengine_tenant_running", "A tenant's jobs claimed or running.", labels=tenant
        )
        waiting = GaugeMetricFamily(
            "jobengine_tenant_waiting",
            "A tenant's scheduled jobs the leader has not published yet (cap, fair share).",
            labels=tenant,
        )
        fair_waiting = GaugeMetricFamily(
            "jobengine_fair_queue_waiting",
            "Jobs of a fair-shared queue waiting for the leader's fill.",
            labels=["queue"],
        )
        fair_in_flight = GaugeMetricFamily(
            "jobengine_fair_queue_in_flight",
            "Messages of a fair-shared queue in the broker, not yet claimed.",
            labels=["queue"],
        )
        with transaction(self._engine) as conn:
            repo = QuotaRepository(conn)
            usage, fair = repo.usage(), repo.fair_usage()
        for u in usage:
            name = [u.quota.tenant_id]
            if u.quota.max_queued is not None:
                limit.add_metric(name, u.quota.max_queued)
            if u.quota.max_running is not None:
                cap.add_metric(name, u.quota.max_running)
            queued.add_metric(name, u.queued)
            running.add_metric(name, u.running)
            waiting.add_metric(name, u.waiting)
        for f in fair:
            fair_waiting.add_metric([f.fair.queue], f.waiting)
            fair_in_flight.add_metric([f.fair.queue], f.in_flight)
        yield from (limit, cap, queued, running, waiting, fair_waiting, fair_in_flight)
