"""Both clients manage rate limits through the real API: set, read, delete, and a refusal
that arrives as ``ApiError`` with the envelope's code and hint."""

from __future__ import annotations

import asyncio

import pytest

from jobengine.client import ApiError, AsyncJobEngineClient, JobEngineClient, JobStatus
from tests.api.conftest import make_key
from tests.client.server import ApiServer
from tests.fleet.conftest import Fleet


@pytest.fixture
def admin_key(fleet: Fleet) -> str:
    return make_key(fleet.engine, "ops", "admin", name="ops")


def test_the_blocking_client_sets_reads_and_deletes_a_limit_that_holds_jobs(
    api: ApiServer, admin_key: str
) -> None:
    with (
        JobEngineClient(api.url, api_key=admin_key, tenant_id="ops") as admin,
        JobEngineClient(api.url, api_key=api.key, tenant_id=api.tenant_id) as producer,
    ):
        made = admin.set_limit("noop-1h", rate=1, per="hour", burst=1, job_type="noop")
        assert (made.name, made.rate, made.tokens, made.waiting) == ("noop-1h", 1.0, 1, 0)
        first = producer.create("noop", {}, project_id="p")
        held = producer.create("noop", {}, project_id="p")
        assert (first.status, held.status) == (JobStatus.SCHEDULED, JobStatus.PENDING)
        assert producer.history(held.id)[0].reason == "rate_limited: noop-1h key "

        [listed] = admin.limits()
        assert (listed.tokens, listed.waiting) == (0, 1) and listed.next_admission_at
        with pytest.raises(ApiError) as refused:
            admin.set_limit("bad", rate=1, burst=1, scope="key", job_type="noop")
        assert (refused.value.status, refused.value.code) == (422, "RATE_LIMIT_INVALID")
        assert refused.value.hint

        admin.delete_limit("noop-1h")
        with pytest.raises(ApiError) as gone:
            admin.limit("noop-1h")
        assert (gone.value.status, gone.value.code) == (404, "RATE_LIMIT_NOT_FOUND")


def test_the_async_client_manages_limits_like_the_blocking_one(
    api: ApiServer, admin_key: str
) -> None:
    async def scenario() -> None:
        async with AsyncJobEngineClient(api.url, api_key=admin_key, tenant_id="ops") as admin:
            made = await admin.set_limit(
                "per-account",
                rate=5,
                per="minute",
                burst=2,
                scope="key",
                job_type="noop",
                key_path="account_id",
            )
            assert (made.scope, made.key_path) == ("key", "account_id")
            assert [limit.name for limit in await admin.limits()] == ["per-account"]
            assert (await admin.limit("per-account")).burst == 2
            await admin.delete_limit("per-account")
            assert await admin.limits() == []

    asyncio.run(scenario())
