"""Runs through the client, sync and async, against the real API server and a real fleet."""

from __future__ import annotations

import asyncio

import pytest

from jobengine.client import (
    ApiError,
    AsyncJobEngineClient,
    JobEngineClient,
    JobStatus,
    RetryConfig,
    RunEvent,
    RunJobRequest,
    RunStatus,
    TriggerRule,
)
from tests.client.readme import examples
from tests.client.server import ApiServer
from tests.fleet import handlers  # noqa: F401  (registers the test job types here too)
from tests.fleet.conftest import Fleet

FAST = RetryConfig(attempts=3, backoff_seconds=0.01, max_backoff_seconds=0.05)
DIAMOND_EDGES = [("A", "B"), ("A", "C"), ("B", "D"), ("C", "D")]


def diamond(job_type: str) -> list[RunJobRequest]:
    return [RunJobRequest(key=key, type=job_type, payload={"n": key}) for key in "ABCD"]


def test_a_diamond_runs_to_completed_and_its_stream_ends_after_the_last_job(
    api: ApiServer, fleet: Fleet
) -> None:
    fleet.start_worker("w1", concurrency=2)
    fleet.start_reaper("reaper")
    with JobEngineClient(api.url, api_key=api.key, tenant_id=api.tenant_id, retry=FAST) as client:
        created = client.create_run("diamond", diamond("effect"), DIAMOND_EDGES, project_id="p")
        assert created.run.status is RunStatus.RUNNING
        assert created.job("A").status is JobStatus.SCHEDULED
        assert created.job("D").status is JobStatus.PENDING
        events: list[RunEvent] = list(client.stream_run_events(created.run.id))
        done = client.get_run(created.run.id)
        listed = [run.id for run in client.list_runs(status="completed", page_size=1)]
    assert done.run.status is RunStatus.COMPLETED and done.run.jobs_completed == 4
    assert all(job.status is JobStatus.COMPLETED and job.has_result for job in done.jobs)
    assert events[-1].run is not None and events[-1].run.status is RunStatus.COMPLETED
    completed_order = [
        e.job_id for e in events if e.to_status is JobStatus.COMPLETED and e.job_id is not None
    ]
    ids = {job.key: job.id for job in done.jobs}
    assert sorted(completed_order) == sorted(ids.values())
    assert completed_order.index(ids["D"]) > max(
        completed_order.index(ids["B"]), completed_order.index(ids["C"])
    )
    assert completed_order[0] == ids["A"]
    assert listed == [created.run.id]


def test_the_async_client_submits_replays_lists_streams_and_cancels_a_run(
    api: ApiServer, fleet: Fleet
) -> None:
    async def scenario() -> None:
        async with AsyncJobEngineClient(
            api.url, api_key=api.key, tenant_id=api.tenant_id, retry=FAST
        ) as client:
            jobs = [*diamond("noop"), RunJobRequest("E", "noop", trigger_rule=TriggerRule.ALL_DONE)]
            edges = [*DIAMOND_EDGES, ("D", "E")]
            run = await client.create_run(
                "nightly", jobs, edges, project_id="etl", idempotency_key="nightly-1"
            )
            again = await client.create_run(
                "nightly", jobs, edges, project_id="etl", idempotency_key="nightly-1"
            )
            assert again.run.id == run.run.id
            assert run.job("E").trigger_rule is TriggerRule.ALL_DONE
            with pytest.raises(ApiError) as cycle:
                await client.create_run("bad", jobs, [*edges, ("E", "A")], project_id="etl")
            assert (cycle.value.status, cycle.value.code) == (422, "RUN_CYCLE")
            cancelled = await client.cancel_run(run.run.id)
            assert cancelled.run.status is RunStatus.CANCELLED
            assert sorted(cancelled.cancelled_job_ids or []) == sorted(j.id for j in run.jobs)
            events = [event async for event in client.stream_run_events(run.run.id)]
            assert events[-1].run is not None and events[-1].run.status is RunStatus.CANCELLED
            assert {e.job_id for e in events if e.to_status is JobStatus.CANCELLED} == {
                j.id for j in run.jobs
            }
            listed = [r.id async for r in client.list_runs(status=RunStatus.CANCELLED)]
            assert listed == [run.run.id]
            assert [r.id async for r in client.list_runs(project_id="elsewhere")] == []
            with pytest.raises(ApiError) as missing:
                await client.get_run(run.run.id + 1000)
            assert (missing.value.status, missing.value.code) == (404, "RUN_NOT_FOUND")

    asyncio.run(scenario())


def test_the_readme_run_example_runs(api: ApiServer, fleet: Fleet) -> None:
    fleet.start_worker("w1", concurrency=2)
    [run_example] = [code for code in examples("Python client") if "create_run" in code]
    exec(run_example, {"API_URL": api.url, "API_KEY": api.key})
