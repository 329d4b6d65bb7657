"""Rate limits at submission: the GCRA slots a job takes, the births that say why a job waits,
a batch's slots in one statement, and refusals of definitions that are no token bucket.

Counted and read from Postgres, never timed: slots are compared with the ``now()`` of the
submitting transaction, which Postgres recorded as each birth row's ``at``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, make_url, text

from bench.wire_count import CountingRelay, WireCount
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.limits import registry
from jobengine.limits.cache import LimitCache
from jobengine.limits.definition import RateLimit, Scope
from jobengine.limits.errors import RateLimitInvalid, RateLimitNotFound, RateLimitUnitsInvalid
from jobengine.store.database import transaction, unpooled_engine
from jobengine.store.history_repository import JobHistoryRepository
from jobengine.submission import submit, submit_many

S = JobStatus
TEN_A_SECOND = RateLimit("noop-10s", Scope.TYPE, rate=10, per="second", burst=5, job_type="noop")
PER_ACCOUNT = RateLimit(
    "per-account", Scope.KEY, rate=1, per="minute", burst=2, job_type="noop", key_path="account_id"
)


def set_limits(engine: Engine, *limits: RateLimit) -> None:
    with transaction(engine) as conn:
        for limit in limits:
            registry.set_limit(conn, limit)


def test_a_burst_is_born_scheduled_and_the_rest_wait_pending_one_token_apart(
    engine: Engine,
) -> None:
    set_limits(engine, TEN_A_SECOND)
    with transaction(engine) as conn:
        jobs = [submit(conn, NewJob(type="noop", payload={"n": n}))[0] for n in range(8)]
        births = [JobHistoryRepository(conn).for_job(job.id)[0] for job in jobs]

    assert [job.status for job in jobs] == [S.SCHEDULED] * 5 + [S.PENDING] * 3
    now = births[0].at  # the transaction's now(), Postgres's clock
    assert [job.not_before for job in jobs[5:]] == [
        now + timedelta(seconds=0.1 * k) for k in (1, 2, 3)
    ]
    assert {b.reason for b in births[:5]} == {"submitted"}
    assert [b.reason for b in births[5:]] == ["rate_limited: noop-10s key "] * 3
    details = births[5].details
    assert (details["rate_limit"], details["key"]) == ("noop-10s", "")
    assert datetime.fromisoformat(details["slot"]) == jobs[5].not_before
    assert all(job.attempt == 0 and job.budget_attempt == 0 for job in jobs)


def test_a_keyed_limit_lets_key_a_through_while_key_b_waits(engine: Engine) -> None:
    set_limits(engine, PER_ACCOUNT)
    with transaction(engine) as conn:
        b_jobs = [submit(conn, NewJob(type="noop", payload={"account_id": "B"}))[0] for _ in "123"]
        a_job, _ = submit(conn, NewJob(type="noop", payload={"account_id": "A"}))
        other, _ = submit(conn, NewJob(type="sleep", payload={"seconds": 0}))

    assert [job.status for job in b_jobs] == [S.SCHEDULED, S.SCHEDULED, S.PENDING]
    assert a_job.status is S.SCHEDULED and other.status is S.SCHEDULED
    with transaction(engine) as conn:
        [waiting] = JobHistoryRepository(conn).for_job(b_jobs[2].id)
    assert waiting.reason == "rate_limited: per-account key B"
    assert b_jobs[2].not_before == waiting.at + timedelta(minutes=1)


def test_several_limits_on_one_job_advance_every_bucket_and_the_latest_slot_holds_it(
    engine: Engine,
) -> None:
    per_tenant = RateLimit("per-tenant", Scope.TENANT, rate=1, per="hour", burst=1)
    set_limits(engine, TEN_A_SECOND, per_tenant)
    with transaction(engine) as conn:
        first, _ = submit(conn, NewJob(type="noop", tenant_id="t1"))
        second, _ = submit(conn, NewJob(type="noop", tenant_id="t1"))
        elsewhere, _ = submit(conn, NewJob(type="noop", tenant_id="t2"))
        [held] = JobHistoryRepository(conn).for_job(second.id)
        buckets = dict(conn.execute(text("SELECT key, tat FROM rate_limit_buckets")).all())

    assert (first.status, second.status, elsewhere.status) == (S.SCHEDULED, S.PENDING, S.SCHEDULED)
    assert held.reason == "rate_limited: per-tenant key t1"
    assert second.not_before == held.at + timedelta(hours=1)
    assert buckets[""] == held.at + timedelta(seconds=0.3), "all three took a noop token"
    assert buckets["t1"] == held.at + timedelta(hours=2)


def test_a_job_costs_the_units_its_payload_declares_where_its_limit_reads_them(
    engine: Engine,
) -> None:
    rows = RateLimit(
        "rows", Scope.TYPE, rate=10, per="second", burst=10, job_type="noop", units_path="rows"
    )
    set_limits(engine, rows)
    with transaction(engine) as conn:
        big, _ = submit(conn, NewJob(type="noop", payload={"rows": 8}))
        next_one, _ = submit(conn, NewJob(type="noop", payload={"rows": 4}))
        [birth] = JobHistoryRepository(conn).for_job(next_one.id)
    assert big.status is S.SCHEDULED and next_one.status is S.PENDING
    assert next_one.not_before == birth.at + timedelta(seconds=0.2)

    with transaction(engine) as conn:
        before = conn.execute(text("SELECT count(*) FROM jobs")).scalar_one()
        with pytest.raises(RateLimitUnitsInvalid, match="'rows'"):
            submit(conn, NewJob(type="noop", payload={"rows": "many"}))
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar_one() == before


@pytest.fixture
def relay(db_url: str) -> Iterator[CountingRelay]:
    url = make_url(db_url)
    counting = CountingRelay(url.host or "127.0.0.1", url.port or 5432)
    yield counting
    counting.close()


def test_a_batch_takes_all_its_slots_in_one_statement_whatever_its_size(
    engine: Engine, db_url: str, relay: CountingRelay
) -> None:
    set_limits(engine, TEN_A_SECOND, PER_ACCOUNT)
    counted = unpooled_engine(
        make_url(db_url).set(port=relay.port).render_as_string(hide_password=False),
        application_name="t",
    )
    try:
        for size in (3, 60):
            batch = [NewJob(type="noop", payload={"account_id": f"a{n % 4}"}) for n in range(size)]
            with transaction(counted) as conn:
                # Warm: the limits read into this process's cache, both statements prepared.
                submit_many(conn, batch + batch)
                before = relay.count()
                stored = submit_many(conn, batch)
                after = relay.count()
            assert after - before == WireCount(statements=2, round_trips=2), size
            waiting = [job for job, _ in stored if job.status is S.PENDING]
            assert len(waiting) == size
    finally:
        counted.dispose()


def test_a_batch_books_the_same_slots_as_the_same_jobs_submitted_one_by_one(
    engine: Engine,
) -> None:
    set_limits(engine, TEN_A_SECOND)
    batch = [NewJob(type="noop", payload={"n": n}) for n in range(9)]
    with transaction(engine) as conn:
        stored = [job for job, _ in submit_many(conn, batch)]
        history = JobHistoryRepository(conn)
        births = [history.for_job(job.id)[0] for job in stored]
    now = births[0].at
    assert [job.not_before for job in stored] == [None] * 5 + [
        now + timedelta(seconds=0.1 * k) for k in (1, 2, 3, 4)
    ]
    assert [b.reason for b in births] == ["submitted"] * 5 + ["rate_limited: noop-10s key "] * 4
    assert [datetime.fromisoformat(b.details["slot"]) for b in births[5:]] == [
        job.not_before for job in stored[5:]
    ]


def test_an_idempotent_retry_takes_no_second_slot(engine: Engine) -> None:
    set_limits(engine, TEN_A_SECOND)
    with transaction(engine) as conn:
        for _ in range(3):
            submit(conn, NewJob(type="noop", idempotency_key="once"))
        tat = conn.execute(text("SELECT tat FROM rate_limit_buckets")).scalar_one()
        [birth] = JobHistoryRepository(conn).for_job(
            conn.execute(text("SELECT id FROM jobs")).scalar_one()
        )
    assert tat == birth.at + timedelta(seconds=0.1)


@pytest.mark.parametrize(
    ("limit", "says"),
    [
        (RateLimit("x", Scope.TYPE, rate=0, per="second", burst=1, job_type="noop"), "rate 0"),
        (RateLimit("x", Scope.TYPE, rate=1, per="day", burst=1, job_type="noop"), "per 'day'"),
        (
            RateLimit("x", Scope.TYPE, rate=2e6, per="second", burst=1, job_type="noop"),
            "outside one token a year to 1,000,000 a second",
        ),
        (
            RateLimit("x", Scope.TYPE, rate=1e-4, per="hour", burst=1, job_type="noop"),
            "rate 0.0001 per hour is outside",
        ),
        (RateLimit("x", Scope.TYPE, rate=1, per="second", burst=0, job_type="noop"), "burst 0"),
        (RateLimit("x", Scope.TYPE, rate=1, per="second", burst=1), "names no job type"),
        (RateLimit("x", Scope.KEY, rate=1, per="second", burst=1, job_type="noop"), "key path"),
        (
            RateLimit("x", Scope.TYPE, rate=1, per="second", burst=2, job_type="noop", units=3),
            "units 3",
        ),
        (RateLimit("a b", Scope.TENANT, rate=1, per="second", burst=1), "name 'a b'"),
        (
            RateLimit("x", Scope.KEY, rate=1, per="second", burst=1, job_type="n", key_path="a..b"),
            "empty field",
        ),
    ],
)
def test_a_limit_that_is_no_token_bucket_is_refused_with_what_to_fix_and_nothing_written(
    engine: Engine, limit: RateLimit, says: str
) -> None:
    with transaction(engine) as conn, pytest.raises(RateLimitInvalid, match=says) as refused:
        registry.set_limit(conn, limit)
    assert refused.value.hint and refused.value.code == "RATE_LIMIT_INVALID"
    with transaction(engine) as conn:
        assert registry.list_limits(conn) == []


def test_a_deleted_limit_takes_no_more_slots_and_its_waiting_jobs_keep_theirs(
    engine: Engine,
) -> None:
    set_limits(engine, PER_ACCOUNT)
    with transaction(engine) as conn:
        jobs = [submit(conn, NewJob(type="noop", payload={"account_id": "A"}))[0] for _ in "123"]
        registry.delete_limit(conn, PER_ACCOUNT.name)
        after, _ = submit(conn, NewJob(type="noop", payload={"account_id": "A"}))
        kept = conn.execute(
            text("SELECT not_before FROM jobs WHERE id = :id"), {"id": jobs[2].id}
        ).scalar_one()
        with pytest.raises(RateLimitNotFound, match="per-account"):
            registry.delete_limit(conn, PER_ACCOUNT.name)
    assert after.status is S.SCHEDULED
    assert kept == jobs[2].not_before


def test_status_reports_tokens_waiting_units_and_the_next_admission(engine: Engine) -> None:
    idle = RateLimit("idle", Scope.TYPE, rate=10, per="second", burst=5, job_type="shell")
    set_limits(engine, PER_ACCOUNT, TEN_A_SECOND, idle)
    with transaction(engine) as conn:
        for account in "AAAAB":
            submit(conn, NewJob(type="sleep", payload={"seconds": 0}))
            submit(conn, NewJob(type="noop", payload={"account_id": account}))
        [birth] = JobHistoryRepository(conn).for_job(
            conn.execute(text("SELECT min(id) FROM jobs")).scalar_one()
        )
        status = {s.name: s for s in registry.statuses(conn)}
    keyed, spent = status["per-account"], status["noop-10s"]
    assert (keyed.tokens, keyed.waiting) == (0, 2)  # A: 4 booked, 2 beyond the burst
    assert keyed.next_admission == birth.at + timedelta(minutes=1)
    assert (spent.tokens, spent.waiting, spent.next_admission) == (0, 0, None)
    assert (status["idle"].tokens, status["idle"].waiting) == (5, 0)


def test_a_process_sees_a_limit_another_process_set_once_its_copy_is_older_than_the_ttl(
    engine: Engine,
) -> None:
    now = [0.0]
    elsewhere = LimitCache(ttl_seconds=2.0, clock=lambda: now[0])  # another process's copy
    with transaction(engine) as conn:
        assert elsewhere.through(conn) == ()
        registry.set_limit(conn, TEN_A_SECOND)
        now[0] = 1.9
        assert elsewhere.through(conn) == (), "read again only once the TTL has passed"
        now[0] = 2.0
        assert elsewhere.through(conn) == (TEN_A_SECOND,)
