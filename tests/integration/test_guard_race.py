"""Racing transitions on one job: exactly one wins, the rest get a typed refusal (invariant 2).

Each racer is a thread with its own connection; a barrier per job releases all of them at
once, so their compare-and-set statements meet on the row lock.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, text

from jobengine import guard
from jobengine.domain.job import Job, NewJob
from jobengine.domain.status import JobStatus
from jobengine.errors import InvalidTransition, StaleLease, TransitionRefused
from jobengine.store.database import make_engine, transaction

JOBS = 200
RACERS = 8
BARRIER_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Racer:
    target: JobStatus
    owner: str
    lease_token: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    racer: Racer
    job: Job | None
    refused: TransitionRefused | None


@pytest.fixture
def race_engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url, pool_size=RACERS, max_overflow=0)
    yield eng
    eng.dispose()


def scheduled_jobs(engine: Engine, n: int) -> list[Job]:
    with transaction(engine) as conn:
        jobs = [guard.create_job(conn, NewJob(type="noop"), schedule=True) for _ in range(n)]
    assert all(j is not None and j.status is JobStatus.SCHEDULED for j in jobs)
    return [j for j in jobs if j is not None]


def race(
    engine: Engine, jobs: list[Job], racers_for: Callable[[Job], list[Racer]]
) -> dict[int, list[Outcome]]:
    """Run every job's racers at once (one barrier per job); outcomes per job id."""

    def attempt(job_id: int, racer: Racer, barrier: threading.Barrier) -> Outcome:
        with engine.connect() as conn:
            barrier.wait(BARRIER_TIMEOUT)
            try:
                with conn.begin():
                    moved = guard.transition(
                        conn,
                        job_id,
                        racer.target,
                        actor=racer.owner,
                        lease_owner=racer.owner,
                        lease_token=racer.lease_token,
                    )
            except TransitionRefused as refused:
                return Outcome(racer, None, refused)
            return Outcome(racer, moved.job, None)

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        futures = {}
        for job in jobs:
            racers = racers_for(job)
            assert len(racers) == RACERS
            barrier = threading.Barrier(RACERS)
            futures[job.id] = [pool.submit(attempt, job.id, r, barrier) for r in racers]
        # Any other exception (deadlock, constraint violation) fails the test here.
        return {job_id: [f.result() for f in fs] for job_id, fs in futures.items()}


def history_pairs(engine: Engine, job_ids: list[int]) -> dict[int, list[tuple[str | None, str]]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT job_id, from_status, to_status FROM job_history "
                "WHERE job_id = ANY(:ids) ORDER BY job_id, id"
            ),
            {"ids": job_ids},
        ).all()
    pairs: dict[int, list[tuple[str | None, str]]] = {i: [] for i in job_ids}
    for row in rows:
        pairs[row.job_id].append((row.from_status, row.to_status))
    return pairs


def event_counts(engine: Engine, job_ids: list[int]) -> Counter[int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT job_id, count(*) FROM job_events WHERE job_id = ANY(:ids) GROUP BY 1"),
            {"ids": job_ids},
        ).all()
        return Counter({int(row[0]): int(row[1]) for row in rows})


def test_concurrent_claims_of_one_job_have_exactly_one_winner(race_engine: Engine) -> None:
    jobs = scheduled_jobs(race_engine, JOBS)
    outcomes = race(
        race_engine,
        jobs,
        lambda job: [Racer(JobStatus.CLAIMED, f"worker-{n}") for n in range(RACERS)],
    )
    ids = [j.id for j in jobs]
    history = history_pairs(race_engine, ids)
    events = event_counts(race_engine, ids)
    for job_id, results in outcomes.items():
        winners = [o for o in results if o.job is not None]
        assert len(winners) == 1, f"job {job_id}: {len(winners)} claims won"
        won = winners[0].job
        assert won is not None
        assert won.lease_owner == winners[0].racer.owner
        assert (won.lease_token, won.attempt) == (1, 1)
        for loser in (o for o in results if o.job is None):
            refused = loser.refused
            assert isinstance(refused, InvalidTransition), repr(refused)
            # The loser is told the state the winner left, not the one it saw before the lock.
            assert (refused.job_id, refused.current, refused.wanted) == (
                job_id,
                "claimed",
                "claimed",
            )
        assert history[job_id] == [
            (None, "scheduled"),
            ("scheduled", "claimed"),
        ]
        assert events[job_id] == 2
    with race_engine.connect() as conn:
        owners = conn.execute(
            text("SELECT id, lease_owner FROM jobs WHERE id = ANY(:ids)"), {"ids": ids}
        ).all()
    by_id = {job_id: next(o for o in rs if o.job is not None) for job_id, rs in outcomes.items()}
    assert {i: owner for i, owner in owners} == {i: o.racer.owner for i, o in by_id.items()}


def claimants_and_cancellers(*, fenced: bool) -> Callable[[Job], list[Racer]]:
    def racers(job: Job) -> list[Racer]:
        token = job.lease_token if fenced else None
        return [
            Racer(JobStatus.CLAIMED if n % 2 == 0 else JobStatus.CANCELLED, f"racer-{n}", token)
            for n in range(RACERS)
        ]

    return racers


def test_fenced_claims_racing_fenced_cancels_have_exactly_one_winner(
    race_engine: Engine,
) -> None:
    """Every racer presents the lease token it read: a compare-and-set on the version seen."""
    jobs = scheduled_jobs(race_engine, JOBS)
    outcomes = race(race_engine, jobs, claimants_and_cancellers(fenced=True))
    history = history_pairs(race_engine, [j.id for j in jobs])
    winning_targets: Counter[JobStatus] = Counter()
    for job_id, results in outcomes.items():
        winners = [o for o in results if o.job is not None]
        assert len(winners) == 1, f"job {job_id}: {len(winners)} racers won"
        target = winners[0].racer.target
        winning_targets[target] += 1
        for loser in (o for o in results if o.job is None):
            refused = loser.refused
            if target is JobStatus.CANCELLED or loser.racer.target is JobStatus.CLAIMED:
                assert isinstance(refused, InvalidTransition), repr(refused)
                assert refused.current == target.value
            else:  # a cancel presenting the token the winning claim replaced
                assert isinstance(refused, StaleLease), repr(refused)
                assert (refused.presented, refused.current) == (0, 1)
        assert history[job_id] == [
            (None, "scheduled"),
            ("scheduled", target.value),
        ]
    assert sum(winning_targets.values()) == JOBS
    # Both kinds of racer won somewhere: the race really was open to either (odds of a miss
    # with 200 fair races are nil).
    assert winning_targets[JobStatus.CLAIMED] > 0 and winning_targets[JobStatus.CANCELLED] > 0


def test_unfenced_claims_racing_cancels_serialise_into_a_valid_history(
    race_engine: Engine,
) -> None:
    """A user's cancel holds no token, so it may follow a claim; but one claim at most wins,
    exactly one cancel wins, and history shows them in the order the table allows."""
    jobs = scheduled_jobs(race_engine, JOBS)
    outcomes = race(race_engine, jobs, claimants_and_cancellers(fenced=False))
    history = history_pairs(race_engine, [j.id for j in jobs])
    orders: Counter[str] = Counter()
    for job_id, results in outcomes.items():
        won = Counter(o.racer.target for o in results if o.job is not None)
        assert won[JobStatus.CANCELLED] == 1, f"job {job_id}: {won}"
        assert won[JobStatus.CLAIMED] <= 1, f"job {job_id}: {won}"
        assert all(isinstance(o.refused, InvalidTransition) for o in results if o.job is None)
        expected = [(None, "scheduled")]
        if won[JobStatus.CLAIMED]:
            expected += [("scheduled", "claimed"), ("claimed", "cancelled")]
        else:
            expected += [("scheduled", "cancelled")]
        assert history[job_id] == expected
        orders["claim, then cancel" if won[JobStatus.CLAIMED] else "cancel first"] += 1
    assert len(orders) == 2, f"one ordering never happened: {orders}"
