"""Random walks through the guard, valid and invalid, checked against a model after every step.

Hypothesis drives a handful of jobs with moves to any of the seven states, sometimes with a
wrong fencing token, sometimes as the reaper (lease must have expired), sometimes along the
retry path ``running → failed → scheduled``. A plain model predicts each outcome from the
transition table; the invariants compare Postgres with the model and check the audit trail.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, text

from jobengine import guard
from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.domain.transitions import BIRTH_STATES, allowed_targets, is_allowed
from jobengine.errors import InvalidTransition, LeaseNotExpired, StaleLease, TransitionRefused
from jobengine.store.database import transaction

LEASED = frozenset({JobStatus.CLAIMED, JobStatus.RUNNING})
LIVE_TTL, EXPIRED_TTL = 60.0, -60.0
NOT_FINAL = frozenset(
    {JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.CLAIMED, JobStatus.RUNNING}
)
ONWARD = frozenset(JobStatus) - {JobStatus.CANCELLED}
ANY_TARGET = st.sampled_from([*JobStatus, JobStatus.CANCELLED, JobStatus.CANCELLED])
MOSTLY = st.sampled_from([True, True, True, False])
TOKEN_KINDS = st.sampled_from(["current", "current", "current", "none", "wrong"])
"""Mostly the job's own token (as its lease holder would), sometimes none or a stale one."""


@dataclass
class ModelJob:
    status: JobStatus
    lease_token: int = 0
    lease_expired: bool | None = None
    """None: no lease held; else whether the lease's expiry lies in the past."""
    attempt: int = 0
    history_rows: int = 1


def expected_refusal(
    job: ModelJob,
    first: JobStatus,
    *,
    token: int | None,
    reaper: bool,
) -> type[TransitionRefused] | None:
    """What the guard must answer, in the order it reports reasons; None: the move succeeds."""
    if not is_allowed(job.status, first):
        return InvalidTransition
    if token is not None and token != job.lease_token:
        return StaleLease
    if reaper and not job.lease_expired:
        return LeaseNotExpired
    return None


class GuardMachine(RuleBasedStateMachine):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.model: dict[int, ModelJob] = {}
        self.rows_at_creation = 0
        self.steps_taken = 0
        """Successful steps; a retry path that succeeds counts two."""

    # ---- rules -----------------------------------------------------------------------------

    @initialize()
    def first_job(self) -> None:
        self._create(schedule=False)

    @rule(schedule=st.booleans())
    def create(self, schedule: bool) -> None:
        self._create(schedule=schedule)

    def _create(self, *, schedule: bool) -> None:
        with transaction(self.engine) as conn:
            job = guard.create_job(conn, NewJob(type="noop"), schedule=schedule)
        assert job is not None
        expected = JobStatus.SCHEDULED if schedule else JobStatus.PENDING
        assert job.status is expected
        self.model[job.id] = ModelJob(status=expected, history_rows=1)
        self.rows_at_creation += 1

    def _pick_job(self, data: st.DataObject, wanted: frozenset[JobStatus]) -> int:
        """Mostly a job in one of the ``wanted`` states, when there is one; else any job."""
        fitting = sorted(i for i, m in self.model.items() if m.status in wanted)
        prefer_fitting: bool = data.draw(MOSTLY, label="fitting job")
        if fitting and prefer_fitting:
            return data.draw(st.sampled_from(fitting), label="job")
        return data.draw(st.sampled_from(sorted(self.model)), label="job")

    @rule(
        data=st.data(),
        token_kind=TOKEN_KINDS,
        ttl=st.sampled_from([LIVE_TTL, EXPIRED_TTL]),
        reaper=st.sampled_from([False, False, False, True]),
    )
    def move(self, data: st.DataObject, token_kind: str, ttl: float, reaper: bool) -> None:
        # Mostly a move onward along the table (cancels would end most walks at once),
        # otherwise any of the seven states, self-loops, cancels and ``pending`` included.
        job_id = self._pick_job(data, NOT_FINAL)
        valid = [t for t in allowed_targets(self.model[job_id].status) if t in ONWARD]
        prefer_valid: bool = data.draw(MOSTLY, label="valid target")
        if valid and prefer_valid:
            to = data.draw(st.sampled_from(valid), label="to")
        else:
            to = data.draw(ANY_TARGET, label="to")
        self._apply(job_id, [guard.Step(to)], token_kind=token_kind, ttl=ttl, reaper=reaper)

    @precondition(lambda self: any(m.status is JobStatus.RUNNING for m in self.model.values()))
    @rule(data=st.data(), token_kind=TOKEN_KINDS)
    def fail_and_retry(self, data: st.DataObject, token_kind: str) -> None:
        job_id = self._pick_job(data, frozenset({JobStatus.RUNNING}))
        steps = [guard.Step(JobStatus.FAILED, "handler raised"), guard.Step(JobStatus.SCHEDULED)]
        self._apply(job_id, steps, token_kind=token_kind, ttl=LIVE_TTL, reaper=False)

    def _apply(
        self, job_id: int, steps: list[guard.Step], *, token_kind: str, ttl: float, reaper: bool
    ) -> None:
        job = self.model[job_id]
        token = {
            "none": None,
            "current": job.lease_token,
            "wrong": job.lease_token + 1,
        }[token_kind]
        refusal = expected_refusal(job, steps[0].to, token=token, reaper=reaper)
        try:
            with transaction(self.engine) as conn:
                result = guard.transition(
                    conn,
                    job_id,
                    steps,
                    actor="hypothesis",
                    lease_token=token,
                    lease_owner="worker-h",
                    lease_ttl_seconds=ttl,
                    require_lease_expired=reaper,
                    dead_letter_reason=(
                        DeadLetterReason.NON_RETRYABLE if steps[-1].to is JobStatus.FAILED else None
                    ),
                )
        except TransitionRefused as refused:
            assert refusal is not None, f"guard refused a valid move: {refused!r}"
            assert type(refused) is refusal, f"expected {refusal.__name__}, got {refused!r}"
            assert getattr(refused, "job_id", None) == job_id
            if isinstance(refused, InvalidTransition):
                assert (refused.current, refused.wanted) == (job.status.value, steps[0].to.value)
            return
        assert refusal is None, f"guard allowed a move the model refuses ({refusal.__name__})"
        assert result.from_status is job.status
        for step in steps:
            if step.to is JobStatus.CLAIMED:
                job.lease_token += 1
                job.attempt += 1
            if step.to is JobStatus.SCHEDULED and job.status in LEASED:
                job.attempt -= 1  # handed back before its handler ran: the attempt never ran
            if step.to in LEASED:
                job.lease_expired = ttl < 0
            else:
                job.lease_expired = None
            job.status = step.to
            job.history_rows += 1
            self.steps_taken += 1
        assert result.job.status is job.status
        assert result.job.lease_token == job.lease_token
        assert result.job.attempt == job.attempt

    # ---- invariants ------------------------------------------------------------------------

    @invariant()
    def store_matches_model_and_history_is_a_gap_free_chain(self) -> None:
        if not self.model:
            return
        ids = list(self.model)
        with self.engine.connect() as conn:
            jobs = {
                r.id: r
                for r in conn.execute(
                    text(
                        "SELECT id, status, lease_token, attempt, lease_owner FROM jobs "
                        "WHERE id = ANY(:ids)"
                    ),
                    {"ids": ids},
                )
            }
            history = conn.execute(
                text(
                    "SELECT h.id, h.job_id, h.from_status, h.to_status, h.attempt, "
                    "       (SELECT count(*) FROM job_events e WHERE e.history_id = h.id) AS n, "
                    "       (SELECT min(e.job_id) FROM job_events e WHERE e.history_id = h.id) "
                    "           AS event_job "
                    "FROM job_history h WHERE h.job_id = ANY(:ids) ORDER BY h.job_id, h.id"
                ),
                {"ids": ids},
            ).all()
            orphan_events: int = conn.execute(
                text(
                    "SELECT count(*) FROM job_events e WHERE e.job_id = ANY(:ids) "
                    "AND NOT EXISTS (SELECT 1 FROM job_history h WHERE h.id = e.history_id)"
                ),
                {"ids": ids},
            ).scalar_one()
        assert orphan_events == 0
        assert set(jobs) == set(ids)
        for job_id, model in self.model.items():
            stored = jobs[job_id]
            assert stored.status == model.status.value
            assert stored.lease_token == model.lease_token
            assert stored.attempt == model.attempt
            assert (stored.lease_owner is not None) == (model.status in LEASED)
            rows = [h for h in history if h.job_id == job_id]
            assert len(rows) == model.history_rows
            assert rows[0].from_status is None
            assert rows[0].to_status in {s.value for s in BIRTH_STATES}
            for prev, row in itertools.pairwise(rows):
                assert row.from_status == prev.to_status, f"gap in history of job {job_id}"
                assert is_allowed(JobStatus(row.from_status), JobStatus(row.to_status))
            assert rows[-1].to_status == model.status.value
            for row in rows:
                assert (row.n, row.event_job) == (1, job_id), f"history row {row.id} events"

    @invariant()
    def a_job_is_dead_lettered_exactly_when_it_failed_for_good(self) -> None:
        with self.engine.connect() as conn:
            lettered = set(
                conn.execute(
                    text(
                        "SELECT job_id FROM dead_letters "
                        "WHERE status = 'open' AND job_id = ANY(:ids)"
                    ),
                    {"ids": list(self.model)},
                ).scalars()
            )
        failed = {job_id for job_id, m in self.model.items() if m.status is JobStatus.FAILED}
        assert lettered == failed

    @invariant()
    def successful_steps_account_for_every_history_row(self) -> None:
        # Creation writes one row (two when scheduled at once), each successful step one more.
        with self.engine.connect() as conn:
            stored: int = conn.execute(
                text("SELECT count(*) FROM job_history WHERE job_id = ANY(:ids)"),
                {"ids": list(self.model)},
            ).scalar_one()
        assert stored == self.rows_at_creation + self.steps_taken


def test_random_transitions_keep_store_history_and_outbox_consistent(engine: Engine) -> None:
    class OnThisDatabase(GuardMachine):
        def __init__(self) -> None:
            super().__init__(engine)

    run_state_machine_as_test(
        OnThisDatabase,
        settings=settings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
