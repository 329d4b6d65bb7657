"""Both clients manage schedules through the real API: create, read, list, edit, pause,
resume, read slots and delete, a run per slot (``ScheduledRun``), and a refusal arriving as
``ApiError`` naming the field."""

from __future__ import annotations

import asyncio

import pytest

from jobengine.client import (
    ApiError,
    AsyncJobEngineClient,
    JobEngineClient,
    RunJobRequest,
    Schedule,
    ScheduledRun,
    ScheduleRequest,
)
from tests.client.server import ApiServer

NIGHTLY = ScheduleRequest(
    name="nightly",
    job_type="noop",
    payload={"report": "sales"},
    cron="30 2 * * *",
    zone="Europe/Berlin",
    overlap="buffer_one",
    project_id="reports",
)


def test_the_blocking_client_manages_a_schedule(api: ApiServer) -> None:
    with JobEngineClient(api.url, api_key=api.key, tenant_id=api.tenant_id) as client:
        made = client.create_schedule(NIGHTLY)
        assert isinstance(made, Schedule)
        assert (made.tenant_id, made.cron, made.zone, made.overlap) == (
            api.tenant_id,
            "30 2 * * *",
            "Europe/Berlin",
            "buffer_one",
        )
        assert made.job["payload"] == {"report": "sales"} and made.next_slot_at is not None
        assert client.schedule(made.id) == made
        page, cursor = client.schedules()
        assert ([s.id for s in page], cursor) == ([made.id], None)
        edited = client.update_schedule(made.id, cron="0 3 * * *", jitterSeconds=10)
        assert (edited.cron, edited.jitter_seconds, edited.fired_count) == ("0 3 * * *", 10, 0)
        assert client.pause_schedule(made.id).paused
        assert not client.resume_schedule(made.id).paused
        assert client.schedule_slots(made.id) == []
        client.delete_schedule(made.id)
        with pytest.raises(ApiError) as gone:
            client.schedule(made.id)
        assert (gone.value.status, gone.value.code) == (404, "SCHEDULE_NOT_FOUND")


def test_the_async_client_manages_schedules_like_the_blocking_one(api: ApiServer) -> None:
    async def scenario() -> None:
        async with AsyncJobEngineClient(
            api.url, api_key=api.key, tenant_id=api.tenant_id
        ) as client:
            made = await client.create_schedule(
                ScheduleRequest(name="heartbeat", job_type="noop", interval_seconds=300)
            )
            assert (made.interval_seconds, made.cron, made.zone) == (300, None, "UTC")
            assert (await client.schedule(made.id)).name == "heartbeat"
            assert (await client.pause_schedule(made.id)).paused
            with pytest.raises(ApiError) as refused:
                await client.create_schedule(
                    ScheduleRequest(name="bad", job_type="noop", cron="0 2 * * *", zone="Mars")
                )
            assert (refused.value.status, refused.value.code) == (422, "INVALID_CADENCE")
            assert refused.value.message.startswith("zone: ")
            assert refused.value.hint
            await client.delete_schedule(made.id)
            assert (await client.schedules())[0] == []

    asyncio.run(scenario())


def test_a_client_creates_a_run_schedule_and_reads_its_template_back(api: ApiServer) -> None:
    etl = ScheduledRun(
        name="nightly-etl",
        jobs=[
            RunJobRequest(key="extract", type="noop", payload={"source": "shop"}),
            RunJobRequest(key="load", type="noop", trigger_rule="all_done"),
        ],
        edges=[("extract", "load")],
    )
    with JobEngineClient(api.url, api_key=api.key, tenant_id=api.tenant_id) as client:
        made = client.create_schedule(
            ScheduleRequest(name="etl", run=etl, cron="30 2 * * *", project_id="etl")
        )
        assert (made.job, made.last_run_id) == (None, None)
        assert made.run is not None and made.run["name"] == "nightly-etl"
        assert [(j["key"], j["triggerRule"]) for j in made.run["jobs"]] == [
            ("extract", "all_success"),
            ("load", "all_done"),
        ]
        assert made.run["edges"] == [{"parent": "extract", "child": "load"}]
        assert client.schedule(made.id) == made
        with pytest.raises(ApiError) as refused:
            client.create_schedule(
                ScheduleRequest(name="both", job_type="noop", run=etl, interval_seconds=60)
            )
        assert (refused.value.status, refused.value.code) == (422, "INVALID_SCHEDULE")
        assert refused.value.message.startswith("run: ")
