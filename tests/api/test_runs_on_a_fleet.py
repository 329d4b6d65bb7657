"""Cancelling a run over HTTP while one of its jobs runs on a real worker: every job not final
is cancelled, the running one's task is revoked through Celery as a job cancel does, and the
children never run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from jobengine.api.app import CeleryRevoker, create_app
from jobengine.dispatch import task_id_for
from jobengine.fleet import publisher_app
from tests.api.conftest import LiveServer, api_settings, bearer, make_key
from tests.fleet import handlers  # noqa: F401  (registers the test job types here too)
from tests.fleet.conftest import Fleet, wait_until


@dataclass
class WitnessedRevoker:
    """Celery's revoker, noting what it was asked to stop."""

    inner: CeleryRevoker
    revoked: list[str] = field(default_factory=list)

    def revoke(self, task_id: str, *, terminate: bool = False, signal: str = "SIGTERM") -> None:
        self.revoked.append(task_id)
        self.inner.revoke(task_id, terminate=terminate, signal=signal)


@pytest.fixture
def revoker(fleet: Fleet) -> WitnessedRevoker:
    settings = api_settings(fleet.db_url, broker_url=fleet.broker_url)
    return WitnessedRevoker(CeleryRevoker(publisher_app(settings, fleet.broker_url)))


@pytest.fixture
def fleet_api(fleet: Fleet, revoker: WitnessedRevoker) -> Iterator[LiveServer]:
    app = create_app(
        api_settings(fleet.db_url, broker_url=fleet.broker_url),
        engine=fleet.engine,
        publisher=fleet.publisher(),
        revoker=revoker,
        broker_check=lambda: None,
    )
    with LiveServer(app) as server:
        yield server


def test_cancelling_a_run_revokes_its_running_job_and_its_children_never_run(
    fleet: Fleet, fleet_api: LiveServer, revoker: WitnessedRevoker
) -> None:
    fleet.start_worker("w1")
    headers = {**bearer(make_key(fleet.engine, "acme", "jobs:read", "jobs:write")),
               "X-Tenant-Id": "acme"}  # fmt: skip
    body = {
        "name": "held",
        "projectId": "p",
        "jobs": [
            {"key": "A", "type": "blocking", "payload": {"block_attempts": [1]}},
            *({"key": key, "type": "effect"} for key in "BCD"),
        ],
        "edges": [{"parent": "A", "child": c} for c in "BC"] + [{"parent": "B", "child": "D"}],
    }
    with httpx.Client(base_url=fleet_api.url, headers=headers, timeout=60) as client:
        run = client.post("/api/v1/runs", json=body).json()
        a = next(job for job in run["jobs"] if job["key"] == "A")
        wait_until(
            lambda: fleet.job(a["id"]).status.value == "running", 60, "A running on the worker"
        )
        response = client.post(f"/api/v1/runs/{run['id']}/cancel")
        assert response.status_code == 200, response.text
        cancelled = response.json()
    assert cancelled["status"] == "cancelled" and len(cancelled["cancelledJobIds"]) == 4
    assert {job["status"] for job in cancelled["jobs"]} == {"cancelled"}
    assert revoker.revoked == [task_id_for(a["id"], 1)]
    last = fleet.history(a["id"])[-1]
    assert (last.from_status, last.to_status) == ("running", "cancelled")
    others = [job["id"] for job in run["jobs"] if job["key"] != "A"]
    assert all(fleet.effects(job_id) == [] for job_id in others)
