"""Every pair of states against the guard on a real Postgres.

Each allowed pair of ``TRANSITIONS`` must move the job, write exactly one history row and one
outbox event, and set or clear the columns that go with the target state. Each of the other
pairs (self-loops included) must be refused with ``InvalidTransition`` and leave no trace.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from jobengine import guard
from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.domain.job import Job, NewJob
from jobengine.domain.status import FINAL_STATES, JobStatus
from jobengine.domain.transitions import TRANSITIONS, allowed_targets
from jobengine.errors import (
    InvalidTransition,
    JobNotFound,
    LeaseNotExpired,
    StaleLease,
    TransitionRefused,
)
from jobengine.store.database import make_engine, transaction
from jobengine.store.history_repository import JobHistoryRepository
from jobengine.store.jobs_repository import JobsRepository
from tests.conftest import _drop_database, _fresh_database

LEASED_STATES = frozenset({JobStatus.CLAIMED, JobStatus.RUNNING})
ALLOWED_PAIRS = [(t.source, t.target) for t in TRANSITIONS]
DISALLOWED_PAIRS = [
    (s, t) for s, t in itertools.product(JobStatus, JobStatus) if (s, t) not in ALLOWED_PAIRS
]
SETUP_OWNER = "worker-setup"
NO_SUCH_JOB = 9_000_000_000_000

DEAD_LETTER = DeadLetterReason.NON_RETRYABLE
"""Every move to ``failed`` in these tests is final, so it names a dead-letter reason."""


def letter(target: JobStatus) -> dict[str, Any]:
    return {"dead_letter_reason": DEAD_LETTER} if target is JobStatus.FAILED else {}


@pytest.fixture(scope="module")
def engine(pg_admin_url: str, migrated_template: str) -> Iterator[Engine]:
    """One migrated database for the module (a fresh one per test costs most of the run).

    Tests stay independent: each makes its own jobs and looks only at those.
    """
    name, url = _fresh_database(pg_admin_url, migrated_template)
    eng = make_engine(url)
    yield eng
    eng.dispose()
    _drop_database(pg_admin_url, name)


BORN_HELD = JobStatus.PENDING
"""What a job created without ``schedule`` is born in: every state is reached from it."""


def _pair_id(pair: tuple[JobStatus, JobStatus]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


def path_from_creation(target: JobStatus) -> list[JobStatus]:
    """The shortest list of states after ``pending`` that leads a new job to ``target``."""
    came_from: dict[JobStatus, JobStatus | None] = {BORN_HELD: None}
    queue = deque([BORN_HELD])
    while queue:
        state = queue.popleft()
        if state is target:
            break
        for nxt in allowed_targets(state):
            if nxt not in came_from:
                came_from[nxt] = state
                queue.append(nxt)
    if target not in came_from:
        raise AssertionError(f"{target} is unreachable from {BORN_HELD} in the table")
    path: list[JobStatus] = []
    step: JobStatus | None = target
    while step is not None and step is not BORN_HELD:
        path.append(step)
        step = came_from[step]
    return path[::-1]


def drive(conn: Connection, job: Job, path: list[JobStatus]) -> Job:
    """Move ``job`` along ``path`` through the guard, one step at a time, as its owner would."""
    for state in path:
        token = job.lease_token if job.status in LEASED_STATES else None
        job = guard.transition(
            conn,
            job.id,
            state,
            actor="setup",
            reason=f"setup to {state.value}",
            lease_token=token,
            lease_owner=SETUP_OWNER,
            result={"ok": True} if state is JobStatus.COMPLETED else None,
            error={"type": "Boom"} if state is JobStatus.FAILED else None,
            dead_letter_reason=DEAD_LETTER if state is JobStatus.FAILED else None,
        ).job
    return job


def job_in(engine: Engine, source: JobStatus) -> Job:
    """A new job, committed, resting in ``source`` after a valid walk through the table."""
    with transaction(engine) as conn:
        job = guard.create_job(conn, NewJob(type="noop", payload={"n": 1}), schedule=False)
        assert job is not None and job.status is BORN_HELD
        job = drive(conn, job, path_from_creation(source))
    assert job.status is source
    return job


def counts(conn: Connection, job_id: int) -> tuple[int, int]:
    history = JobHistoryRepository(conn)
    return len(history.for_job(job_id)), len(history.events_for_job(job_id))


def transition_kwargs(job: Job, target: JobStatus) -> dict[str, Any]:
    """What a well-behaved caller passes: its fencing token when it holds a lease."""
    return {
        "lease_token": job.lease_token if job.status in LEASED_STATES else None,
        "lease_owner": "worker-b",
        "result": {"answer": 42} if target is JobStatus.COMPLETED else None,
        "error": {"type": "ValueError", "message": "bad"} if target is JobStatus.FAILED else None,
        "dead_letter_reason": DEAD_LETTER if target is JobStatus.FAILED else None,
    }


# ---- the helper itself --------------------------------------------------------------------


@pytest.mark.parametrize("state", list(JobStatus), ids=lambda s: s.value)
def test_every_state_is_reachable_from_creation_along_the_table(state: JobStatus) -> None:
    path = path_from_creation(state)
    previous = BORN_HELD
    for step in path:
        assert step in allowed_targets(previous)
        previous = step
    assert previous is state


# ---- allowed pairs ------------------------------------------------------------------------


@pytest.mark.parametrize("pair", ALLOWED_PAIRS, ids=_pair_id)
def test_allowed_transition_moves_job_and_records_history_and_event(
    engine: Engine, pair: tuple[JobStatus, JobStatus]
) -> None:
    source, target = pair
    before = job_in(engine, source)
    with transaction(engine) as conn:
        history_before, events_before = counts(conn, before.id)
        result = guard.transition(
            conn,
            before.id,
            target,
            actor="tester",
            reason=f"test {source.value}->{target.value}",
            details={"case": _pair_id(pair)},
            **transition_kwargs(before, target),
        )
    with transaction(engine) as conn:
        after = JobsRepository(conn).get(before.id)
        history = JobHistoryRepository(conn).for_job(before.id)
        events = JobHistoryRepository(conn).events_for_job(before.id)

    assert result.from_status is source
    assert result.job.status is target
    assert after.status is target
    assert result.job == after

    expected_attempt = before.attempt
    if target is JobStatus.CLAIMED:
        expected_attempt += 1
    if target is JobStatus.SCHEDULED and source in (JobStatus.CLAIMED, JobStatus.RUNNING):
        expected_attempt -= 1  # handed back before its handler ran: the attempt never ran
    assert after.attempt == expected_attempt
    assert len(history) == history_before + 1
    row = history[-1]
    assert (row.from_status, row.to_status) == (source, target)
    assert row.actor == "tester"
    assert row.reason == f"test {source.value}->{target.value}"
    assert row.attempt == expected_attempt
    expected_details: dict[str, Any] = {"case": _pair_id(pair)}
    if target is JobStatus.FAILED:
        expected_details["error"] = {"code": None, "class": None, "message": "bad"}
    assert row.details == expected_details
    assert row.job_id == before.id
    with engine.connect() as conn:
        lettered = conn.execute(
            text("SELECT status, error_message FROM dead_letters WHERE job_id = :id"),
            {"id": before.id},
        ).all()
    if target is JobStatus.FAILED:
        assert [tuple(r) for r in lettered] == [("open", "bad")]
    else:
        assert all(r.status != "open" for r in lettered)

    assert len(events) == events_before + 1
    envelope = events[-1]
    assert envelope.type == "job.transition"
    assert envelope.tenant_id == before.tenant_id
    assert envelope.occurred_at == row.at
    event = envelope.event
    assert event.history_id == row.id
    assert event.job_id == before.id
    assert (event.from_status, event.to_status) == (source, target)
    assert (event.actor, event.reason, event.attempt) == ("tester", row.reason, expected_attempt)

    assert after.updated_at > before.updated_at
    if target in FINAL_STATES:
        assert after.completed_at is not None and after.completed_at > before.updated_at
    else:
        assert after.completed_at is None
    if target is JobStatus.RUNNING:
        assert after.started_at is not None and after.started_at > before.updated_at
    else:
        assert after.started_at == before.started_at
    if target is JobStatus.SCHEDULED:
        assert after.scheduled_at is not None and after.scheduled_at > before.updated_at
    if target in LEASED_STATES:
        assert after.lease_owner is not None
        assert after.lease_expires_at is not None
        assert after.lease_expires_at > datetime.now(UTC)
    else:
        assert after.lease_owner is None
        assert after.lease_expires_at is None
    if target is JobStatus.CLAIMED:
        assert after.lease_owner == "worker-b"
        assert after.lease_token == before.lease_token + 1
    else:
        assert after.lease_token == before.lease_token
    if target is JobStatus.RUNNING:
        assert after.lease_owner == before.lease_owner
    if target is JobStatus.COMPLETED:
        assert after.result == {"answer": 42}
    if target is JobStatus.FAILED:
        assert after.last_error == {"type": "ValueError", "message": "bad"}


def test_retry_path_running_failed_scheduled_is_one_atomic_move_with_two_history_rows(
    engine: Engine,
) -> None:
    before = job_in(engine, JobStatus.RUNNING)
    with transaction(engine) as conn:
        result = guard.transition(
            conn,
            before.id,
            [guard.Step(JobStatus.FAILED, "handler raised"), guard.Step(JobStatus.SCHEDULED)],
            actor="retry-policy",
            lease_token=before.lease_token,
            error={"type": "Timeout"},
        )
        history = JobHistoryRepository(conn).for_job(before.id)
        events = JobHistoryRepository(conn).events_for_job(before.id)
    assert result.from_status is JobStatus.RUNNING
    assert result.job.status is JobStatus.SCHEDULED
    assert result.job.completed_at is None
    assert result.job.last_error == {"type": "Timeout"}
    assert [(h.from_status, h.to_status) for h in history[-2:]] == [
        (JobStatus.RUNNING, JobStatus.FAILED),
        (JobStatus.FAILED, JobStatus.SCHEDULED),
    ]
    assert history[-2].reason == "handler raised"
    assert [e.event.history_id for e in events[-2:]] == [h.id for h in history[-2:]]


# ---- disallowed pairs ---------------------------------------------------------------------


def test_disallowed_pairs_are_exactly_the_complement_of_the_table() -> None:
    assert len(ALLOWED_PAIRS) == len(set(ALLOWED_PAIRS))
    assert len(DISALLOWED_PAIRS) == len(JobStatus) ** 2 - len(ALLOWED_PAIRS)
    assert all((s, s) in DISALLOWED_PAIRS for s in JobStatus)


@pytest.mark.parametrize("pair", DISALLOWED_PAIRS, ids=_pair_id)
def test_disallowed_transition_is_refused_and_writes_nothing(
    engine: Engine, pair: tuple[JobStatus, JobStatus]
) -> None:
    source, target = pair
    before = job_in(engine, source)
    with transaction(engine) as conn:
        history_before, events_before = counts(conn, before.id)
        with pytest.raises(InvalidTransition) as refused:
            guard.transition(
                conn, before.id, target, actor="tester", **transition_kwargs(before, target)
            )
        # Checked inside the same transaction: the guard wrote nothing, not merely rolled back.
        assert JobsRepository(conn).get(before.id) == before
        assert counts(conn, before.id) == (history_before, events_before)

    err = refused.value
    assert (err.job_id, err.current, err.wanted) == (before.id, source.value, target.value)
    assert str(before.id) in err.message
    assert source.value in err.message and target.value in err.message
    assert err.code == "INVALID_TRANSITION"
    with transaction(engine) as conn:
        assert JobsRepository(conn).get(before.id) == before
        assert counts(conn, before.id) == (history_before, events_before)


# ---- unknown jobs, stale leases, live leases -----------------------------------------------


@pytest.mark.parametrize("target", list(JobStatus), ids=lambda s: s.value)
def test_transition_of_unknown_job_raises_job_not_found(engine: Engine, target: JobStatus) -> None:
    with transaction(engine) as conn, pytest.raises(JobNotFound) as missing:
        guard.transition(conn, NO_SUCH_JOB, target, lease_owner="w", **letter(target))
    assert missing.value.job_id == NO_SUCH_JOB
    assert str(NO_SUCH_JOB) in missing.value.message


LEASED_PAIRS = [(s, t) for s, t in ALLOWED_PAIRS if s in LEASED_STATES]


@pytest.mark.parametrize("pair", LEASED_PAIRS, ids=_pair_id)
@pytest.mark.parametrize("offset", [-1, 1], ids=["older-token", "newer-token"])
def test_wrong_lease_token_is_refused_as_stale_and_writes_nothing(
    engine: Engine, pair: tuple[JobStatus, JobStatus], offset: int
) -> None:
    source, target = pair
    before = job_in(engine, source)
    wrong = before.lease_token + offset
    with transaction(engine) as conn:
        history_before, events_before = counts(conn, before.id)
        with pytest.raises(StaleLease) as stale:
            guard.transition(
                conn, before.id, target, lease_token=wrong, lease_owner="intruder", **letter(target)
            )
        assert JobsRepository(conn).get(before.id) == before
        assert counts(conn, before.id) == (history_before, events_before)
    assert (stale.value.job_id, stale.value.presented, stale.value.current) == (
        before.id,
        wrong,
        before.lease_token,
    )


def test_worker_whose_lease_was_taken_over_can_no_longer_move_the_job(engine: Engine) -> None:
    """Invariant 3: A claims, the lease is rescued and B claims; A's token is now refused."""
    with transaction(engine) as conn:
        job = guard.create_job(conn, NewJob(type="noop"), schedule=True)
        assert job is not None
        a = guard.transition(
            conn, job.id, JobStatus.CLAIMED, lease_owner="a", lease_ttl_seconds=-1
        ).job
    with transaction(engine) as conn:
        guard.transition(
            conn, job.id, JobStatus.SCHEDULED, actor="reaper", require_lease_expired=True
        )
        b = guard.transition(conn, job.id, JobStatus.CLAIMED, lease_owner="b").job
    assert b.lease_token == a.lease_token + 1
    for target in (JobStatus.RUNNING, JobStatus.SCHEDULED, JobStatus.CANCELLED):
        with transaction(engine) as conn, pytest.raises(StaleLease):
            guard.transition(conn, job.id, target, lease_token=a.lease_token, **letter(target))
    with transaction(engine) as conn:
        assert JobsRepository(conn).get(job.id) == b


@pytest.mark.parametrize(
    "pair",
    [(JobStatus.CLAIMED, JobStatus.SCHEDULED), (JobStatus.RUNNING, JobStatus.FAILED)],
    ids=_pair_id,
)
def test_rescue_of_a_live_lease_raises_lease_not_expired(
    engine: Engine, pair: tuple[JobStatus, JobStatus]
) -> None:
    source, target = pair
    before = job_in(engine, source)
    with transaction(engine) as conn:
        history_before, events_before = counts(conn, before.id)
        with pytest.raises(LeaseNotExpired) as alive:
            guard.transition(
                conn,
                before.id,
                target,
                actor="reaper",
                lease_token=before.lease_token,
                require_lease_expired=True,
                **letter(target),
            )
        assert JobsRepository(conn).get(before.id) == before
        assert counts(conn, before.id) == (history_before, events_before)
    assert alive.value.job_id == before.id
    assert isinstance(alive.value, TransitionRefused)


@pytest.mark.parametrize(
    "pair",
    [(JobStatus.CLAIMED, JobStatus.SCHEDULED), (JobStatus.RUNNING, JobStatus.FAILED)],
    ids=_pair_id,
)
def test_rescue_of_an_expired_lease_succeeds(
    engine: Engine, pair: tuple[JobStatus, JobStatus]
) -> None:
    source, target = pair
    with transaction(engine) as conn:
        job = guard.create_job(conn, NewJob(type="noop"), schedule=True)
        assert job is not None
        job = guard.transition(
            conn, job.id, JobStatus.CLAIMED, lease_owner="w", lease_ttl_seconds=-5
        ).job
        if source is JobStatus.RUNNING:
            job = guard.transition(
                conn, job.id, JobStatus.RUNNING, lease_token=job.lease_token, lease_ttl_seconds=-5
            ).job
    assert job.status is source
    with transaction(engine) as conn:
        moved = guard.transition(
            conn,
            job.id,
            target,
            actor="reaper",
            lease_token=job.lease_token,
            require_lease_expired=True,
            **letter(target),
        )
    assert moved.job.status is target
    assert moved.job.lease_owner is None and moved.job.lease_expires_at is None
