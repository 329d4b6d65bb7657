"""Rate limits across a real fleet: four worker processes, the leader's promoter, a failover.

Admissions are the moments Postgres recorded each job reaching ``scheduled`` (its birth row,
or the promoter's ``pending → scheduled``). They are replayed through a GCRA of the limit's
own rate and burst: an admission earlier than the bucket allows fails the test, whatever
the window it falls in. Nothing is timed by the test's clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, text

from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.limits import registry
from jobengine.limits.definition import RateLimit, Scope
from jobengine.producer import submit_jobs
from jobengine.store.database import transaction
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until
from tests.fleet.leaders import LEADER_TTL, REAPER_ENV, live_leader

S = JobStatus
SLOW_TICKS = {"JOBENGINE_REAPER_INTERVAL_SECONDS": "5", "JOBENGINE_LEADER_TTL_SECONDS": "15"}
"""The production interval: the leader must wake for each slot, not every five seconds."""


def admissions(engine: Engine, job_ids: list[int]) -> list[tuple[int, datetime, str]]:
    """(job, when it reached ``scheduled`` first, by whom), in time order."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT DISTINCT ON (job_id) job_id, at, actor FROM job_history"
                " WHERE job_id = ANY(:ids) AND to_status = 'scheduled' ORDER BY job_id, id"
            ),
            {"ids": job_ids},
        ).all()
    return sorted(((r[0], r[1], r[2]) for r in rows), key=lambda r: r[1])


def overdrafts(times: list[datetime], rate_per_second: float, burst: int) -> list[datetime]:
    """Admissions the bucket had no token for: GCRA's virtual scheduling, one token each."""
    interval = timedelta(seconds=1 / rate_per_second)
    tolerance = (burst - 1) * interval
    tat: datetime | None = None
    early = []
    for at in sorted(times):
        if tat is not None and at < tat - tolerance:
            early.append(at)
        tat = (at if tat is None else max(tat, at)) + interval
    return early


def busiest_second(times: list[datetime]) -> int:
    ordered = sorted(times)
    return max(
        sum(1 for t in ordered[i:] if t - start < timedelta(seconds=1))
        for i, start in enumerate(ordered)
    )


def set_limit(engine: Engine, limit: RateLimit) -> None:
    with transaction(engine) as conn:
        registry.set_limit(conn, limit)


def all_completed(fleet: Fleet, ids: list[int]) -> bool:
    with fleet.engine.connect() as conn:
        done = conn.execute(
            text("SELECT count(*) FROM jobs WHERE id = ANY(:ids) AND status = 'completed'"),
            {"ids": ids},
        ).scalar_one()
    return bool(done == len(ids))


def test_a_hundred_jobs_at_ten_a_second_burst_five_never_overdraw_the_bucket_on_four_workers(
    fleet: Fleet,
) -> None:
    """With the leader ticking every 5 s, as in production: it wakes for each slot."""
    set_limit(
        fleet.engine, RateLimit("ten", Scope.TYPE, rate=10, per="second", burst=5, job_type="noop")
    )
    for n in range(4):
        fleet.start_worker(f"w{n}")
    fleet.start_reaper("reaper-1", **SLOW_TICKS)
    wait_until(lambda: live_leader(fleet.engine), 60, "a leader")  # or it starts late
    jobs = submit_jobs(
        fleet.engine, fleet.publisher(), [NewJob(type="noop", payload={"n": n}) for n in range(100)]
    )
    ids = [job.id for job in jobs]
    assert [job.status for job in jobs].count(S.SCHEDULED) == 5
    waiting = fleet.job(ids[-1])
    assert (waiting.status, waiting.attempt, waiting.budget_attempt) == (S.PENDING, 0, 0)

    wait_until(lambda: all_completed(fleet, ids), 120, "all 100 completed")

    admitted = admissions(fleet.engine, ids)
    times = [at for _, at, _ in admitted]
    assert len(admitted) == 100
    assert overdrafts(times, 10, 5) == []
    assert busiest_second(times) <= 5 + 10
    for job_id in ids:
        job = fleet.job(job_id)
        assert (job.attempt, job.budget_attempt) == (1, 1), "waiting cost no attempt"
        moves = [(h.from_status, h.to_status) for h in fleet.history(job_id)]
        assert (S.RUNNING, S.FAILED) not in moves
        birth, *rest = fleet.history(job_id)
        if birth.to_status is S.PENDING:
            promoted = next(h for h in rest if h.from_status is S.PENDING)
            assert promoted.at >= datetime.fromisoformat(birth.details["slot"]), "never early"


def test_a_keyed_limit_runs_key_a_while_key_b_waits_for_its_slot(fleet: Fleet) -> None:
    set_limit(
        fleet.engine,
        RateLimit(
            "per-account",
            Scope.KEY,
            rate=1,
            per="hour",
            burst=1,
            job_type="noop",
            key_path="account_id",
        ),
    )
    fleet.start_worker("w1")
    fleet.start_reaper("reaper-1")
    b_first, b_held = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="noop", payload={"account_id": "B"}) for _ in "12"],
    )
    [a_job] = submit_jobs(
        fleet.engine, fleet.publisher(), [NewJob(type="noop", payload={"account_id": "A"})]
    )
    wait_until(lambda: all_completed(fleet, [a_job.id, b_first.id]), 60, "A and B's first ran")
    held = fleet.job(b_held.id)
    assert (held.status, held.attempt) == (S.PENDING, 0)
    assert fleet.history(b_held.id)[0].reason == "rate_limited: per-account key B"


def test_the_limit_holds_across_a_leader_failover_shorter_than_the_burst_tolerance(
    fleet: Fleet,
) -> None:
    # Two a second with a burst of ten tolerates 4.5 s of promoter delay: more than a
    # takeover takes (the lease TTL plus an interval), so the bucket holds through it.
    set_limit(
        fleet.engine, RateLimit("two", Scope.TYPE, rate=2, per="second", burst=10, job_type="noop")
    )
    fleet.start_worker("w1", concurrency=2)
    fleet.start_worker("w2", concurrency=2)
    procs = {name: fleet.start_reaper(name, **REAPER_ENV) for name in ("reaper-a", "reaper-b")}
    holder, _ = wait_until(lambda: live_leader(fleet.engine), 60, "a leader")
    jobs = submit_jobs(fleet.engine, fleet.publisher(), [NewJob(type="noop") for _ in range(24)])
    ids = [job.id for job in jobs]
    wait_until(
        lambda: any(actor == f"{holder}" for _, _, actor in admissions(fleet.engine, ids)),
        60,
        "the leader promoted a job",
    )
    fleet.kill(procs[holder])
    follower = "reaper-b" if holder == "reaper-a" else "reaper-a"

    wait_until(lambda: all_completed(fleet, ids), 120, "all 24 completed")

    admitted = admissions(fleet.engine, ids)
    assert overdrafts([at for _, at, _ in admitted], 2, 10) == []
    assert {actor for _, _, actor in admitted} >= {holder, follower}
    assert LEADER_TTL < 4.5
    assert all(fleet.job(job_id).attempt == 1 for job_id in ids)
