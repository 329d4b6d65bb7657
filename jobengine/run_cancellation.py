"""Cancelling a run: Postgres first, then the broker, as ``cancellation`` does for one job.

``runs.service.cancel_run`` cancels every job of the run that is not final in one transaction;
after the commit the tasks of those whose attempt had started are revoked with termination.
Cancelling a cancelled run changes nothing; a run that completed or failed is refused
(``RunAlreadyFinal``): there is nothing left to stop.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from jobengine.cancellation import TaskRevoker
from jobengine.dispatch import task_id_for
from jobengine.domain.job import Job
from jobengine.domain.status import RunStatus
from jobengine.runs import service
from jobengine.runs.errors import RunAlreadyFinal
from jobengine.store.database import transaction


@dataclass(frozen=True, slots=True)
class RunCancelOutcome:
    cancelled: list[Job]
    """The jobs this cancel moved; empty when the run was already cancelled."""
    revoked_tasks: list[str]


def cancel_run(
    engine: Engine,
    run_id: int,
    *,
    tenant_id: str | None,
    actor: str,
    reason: str,
    revoker: TaskRevoker | None,
) -> RunCancelOutcome:
    with transaction(engine) as conn:
        try:
            _, cancelled = service.cancel_run(
                conn, run_id, tenant_id=tenant_id, actor=actor, reason=reason
            )
        except RunAlreadyFinal as exc:
            if exc.status != RunStatus.CANCELLED.value:
                raise
            return RunCancelOutcome([], [])
    revoked = []
    if revoker is not None:
        for job in service.revocable(cancelled):
            task_id = task_id_for(job.id, job.attempt)
            revoker.revoke(task_id, terminate=True, signal="SIGTERM")
            revoked.append(task_id)
    return RunCancelOutcome(cancelled, revoked)
