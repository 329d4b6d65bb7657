"""``deploy/grafana/jobengine.json`` is a dashboard Grafana can import, and every query in it
names a metric that a real API's ``/metrics`` exports (a renamed metric fails here, not on an
operator's empty panel)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from jobengine import guard
from jobengine.api.app import create_app
from jobengine.domain.job import NewJob
from jobengine.store.database import transaction
from tests.api.conftest import LiveServer, RecordingPublisher, api_settings
from tests.integration.history_support import complete, start

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "jobengine.json"
METRIC = re.compile(r"\b(jobengine_[a-z0-9_]+)\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
WANTED = (
    "jobengine_transitions_total",
    "jobengine_queue_depth",
    "jobengine_queue_oldest_waiting_seconds",
    "jobengine_job_wait_seconds_bucket",
    "jobengine_job_run_seconds_bucket",
    "jobengine_dead_letters_open",
    "jobengine_workers",
    "jobengine_lease_expiries_total",
)
"""What the issue asks the dashboard to show: throughput by state, queue depth and lag,
wait and run time quantiles, dead letters, workers alive, lease rescues."""


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def exported_names(engine: Engine, db_url: str) -> set[str]:
    """Every series name a real API serves: one finished job first, so histograms have data."""
    with transaction(engine) as conn:
        job = guard.create_job(conn, NewJob(type="noop"), schedule=True)
        assert job is not None
        complete(conn, job.id, start(conn, job.id))
    app = create_app(
        api_settings(db_url),
        engine=engine,
        publisher=RecordingPublisher(),
        revoker=None,
        broker_check=lambda: None,
    )
    with LiveServer(app) as server:
        body = httpx.get(f"{server.url}/metrics", timeout=30).text
    names: set[str] = set()
    for family in text_string_to_metric_families(body):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def test_the_dashboard_is_a_dashboard_with_a_datasource_variable_on_every_panel() -> None:
    board = dashboard()
    assert board["uid"] == "jobengine-overview" and board["title"]
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    [variable] = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    uses = "${" + variable["name"] + "}"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) >= len(WANTED)
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == uses, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uses and target["expr"], panel["title"]
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= grid.keys() and grid["x"] + grid["w"] <= 24


def test_every_query_names_a_metric_the_api_exports_and_the_issues_figures_are_all_there(
    engine: Engine, db_url: str
) -> None:
    exported = exported_names(engine, db_url)
    queried = {
        name
        for panel in dashboard()["panels"]
        for target in panel["targets"]
        for name in METRIC.findall(target["expr"])
    }
    assert queried - exported == set()
    assert set(WANTED) - queried == set()
