"""The chaos figures catch what they promise to: a job finalized twice and a completion whose
effect never ran, while a retry (failed, then scheduled again) is not a second finalization."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text

from jobengine import guard
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.guard import Step
from jobengine.store.database import transaction
from tests.chaos.figures import measure
from tests.chaos.handlers import append_effect

S = JobStatus


def _run(engine: Engine, *, retried: bool = False) -> int:
    with transaction(engine) as conn:
        job = guard.create_job(conn, NewJob(type="chaos_effect"), schedule=True)
        assert job is not None
        retry = [Step(S.FAILED, "handler raised"), Step(S.SCHEDULED, "retry 1")]
        attempts = [retry] if retried else []
        for end in [*attempts, [Step(S.COMPLETED, "handler returned")]]:
            held = guard.transition(
                conn, job.id, [Step(S.CLAIMED), Step(S.RUNNING)], lease_owner="w"
            ).job
            guard.transition(conn, job.id, end, lease_token=held.lease_token)
        return job.id


def test_figures_count_a_second_completion_and_a_completion_without_effect_but_not_a_retry(
    engine: Engine, tmp_path: Path
) -> None:
    twice, unwitnessed, retried = _run(engine), _run(engine), _run(engine, retried=True)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO job_history (job_id, from_status, to_status, actor, attempt) "
                "VALUES (:j, 'running', 'completed', 'a stale worker', 1)"
            ),
            {"j": twice},
        )
    ledger = tmp_path / "ledger"
    for job_id, attempt in ((twice, 1), (retried, 1), (retried, 2)):
        append_effect(str(ledger), job_id, attempt)

    figures, evidence = measure(engine, ledger, "crafted", [twice, unwitnessed, retried], 1.5)

    assert figures["lost"] == 0
    assert figures["double_finalized"] == 1
    assert figures["completed_without_effect"] == 1
    assert figures["effects_per_job"] == {"min": 0, "max": 2, "mean": 1.0}
    assert evidence["by_status"] == {"completed": 3}
