"""Backfills through the client, sync and async, against the real API server and a real fleet:
the leading reaper process creates the slots' jobs, workers run them, and the source's
watermark stops at the slot that failed until its dead-letter replay completes it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from jobengine.client import (
    ApiError,
    AsyncJobEngineClient,
    BackfillRequest,
    BackfillSource,
    JobEngineClient,
    RetryConfig,
)
from jobengine.dead_letters import DeadLetters, ReplayOptions
from tests.client.readme import example
from tests.client.server import ApiServer
from tests.fleet import handlers  # noqa: F401  (registers the test job types here too)
from tests.fleet.conftest import Fleet, wait_until

FAST = RetryConfig(attempts=3, backoff_seconds=0.01, max_backoff_seconds=0.05)
T0 = datetime(2026, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
FAILS = {"fail_attempts": [1, 2, 3, 4]}
"""``flaky`` fails these attempts: every one its policy grants, so the job fails for good."""


def hours(first: int, last: int, **payload: object) -> BackfillRequest:
    return BackfillRequest(
        source="orders",
        project_id="shop",
        start=T0 + first * HOUR,
        end=T0 + last * HOUR,
        job_type="flaky",
        interval_seconds=3600,
        payload=dict(payload),
    )


def test_the_watermark_of_a_backfill_run_by_the_fleet_stops_at_the_failed_slot_until_replayed(
    api: ApiServer, fleet: Fleet
) -> None:
    fleet.start_worker("w1", concurrency=2)
    fleet.start_reaper("reaper")
    with JobEngineClient(api.url, api_key=api.key, tenant_id=api.tenant_id, retry=FAST) as client:
        dry = client.create_backfill(hours(0, 10), dry_run=True)
        assert (dry.plan.slots_total, dry.plan.slots_new, dry.backfill) == (10, 10, None)
        made = [
            client.create_backfill(hours(0, 5)),
            client.create_backfill(hours(5, 6, **FAILS)),
            client.create_backfill(hours(6, 10)),
        ]
        ids = [m.backfill.id for m in made if m.backfill is not None]

        def source() -> BackfillSource:
            [found] = client.backfill_sources("orders")
            return found

        held = wait_until(
            lambda: (s := source()).held_by_status == "failed" and s,
            60,
            "the failed slot holds the watermark",
        )
        assert held.held_at == T0 + 5 * HOUR
        assert held.held_by_job_id is not None
        assert fleet.job(held.held_by_job_id).scheduled_for == T0 + 5 * HOUR, "knows its slot"
        wait_until(lambda: source().watermark == T0 + 4 * HOUR, 30, "watermark at slot 4")
        progress = [client.get_backfill(i).progress for i in ids]
        assert [p.total if p else None for p in progress] == [5, 1, 4]
        wait_until(
            lambda: (p := client.get_backfill(ids[2]).progress) is not None and p.completed == 4,
            60,
            "the slots after the failed one completed",
        )
        assert source().watermark == T0 + 4 * HOUR, "later slots completed; the gap holds it"

        letters = DeadLetters(fleet.engine)
        letters.replay(
            letters.id_for_job(held.held_by_job_id),
            ReplayOptions(actor="ops", payload_patch={"fail_attempts": []}),
        )
        moved = wait_until(
            lambda: (s := source()).watermark == T0 + 9 * HOUR and s, 60, "watermark at slot 9"
        )
        assert moved.held_at == T0 + 10 * HOUR and moved.held_by_job_id is None
        assert [b.id for b in client.list_backfills(source="orders")] == sorted(ids, reverse=True)
        assert all(client.get_backfill(i).status == "created" for i in ids)


def test_the_async_client_creates_cancels_and_reads_refusals(api: ApiServer, fleet: Fleet) -> None:
    fleet.start_worker("w1")

    async def scenario() -> None:
        async with AsyncJobEngineClient(
            api.url, api_key=api.key, tenant_id=api.tenant_id, retry=FAST
        ) as client:
            made = await client.create_backfill(hours(0, 48))
            assert made.backfill is not None and made.backfill.status == "creating"
            cancelled = await client.cancel_backfill(made.backfill.id, cancel_queued=True)
            assert cancelled.status == "cancelled"
            with pytest.raises(ApiError) as refused:
                await client.create_backfill(hours(5, 1))
            assert refused.value.code == "BACKFILL_INVALID"
            assert "end" in str(refused.value)
            [found] = await client.backfill_sources()
            assert found.name == "orders" and found.watermark is None

    asyncio.run(scenario())


def test_the_readme_example_runs_and_its_source_completes_without_a_gap(
    api: ApiServer, fleet: Fleet
) -> None:
    fleet.start_worker("w1", concurrency=2)
    fleet.start_reaper("reaper")
    exec(example("Backfills"), {"API_URL": api.url, "API_KEY": api.key})
    with JobEngineClient(api.url, api_key=api.key, tenant_id=api.tenant_id, retry=FAST) as client:
        made = client.list_backfills(source="orders-hourly")
        assert len(made) == 2, "the example created the backfill twice"
        last = datetime(2026, 1, 1, 23, tzinfo=UTC)
        wait_until(
            lambda: client.backfill_sources("orders-hourly")[0].watermark == last,
            60,
            "the day's 24 slots completed",
        )
        progress = [client.get_backfill(b.id).progress for b in made]
    assert [(p.created, p.existing, p.completed) for p in progress if p] == [
        (0, 24, 24),
        (24, 0, 24),
    ]
