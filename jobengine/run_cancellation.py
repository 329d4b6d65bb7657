"""Cancelling a run twice is harmless, as cancelling a job twice is: the API and the CLI
answer a run already cancelled with nothing changed, where ``runs.producer.cancel_run_now``
(which cancels, commits, then revokes the started tasks) refuses it as already final. A run
that completed or failed is still refused: there is nothing left to stop."""

from __future__ import annotations

from sqlalchemy import Engine

from jobengine.audit import Origin, record
from jobengine.cancellation import TaskRevoker
from jobengine.domain.job import Job
from jobengine.domain.status import RunStatus
from jobengine.runs.errors import RunAlreadyFinal
from jobengine.runs.producer import cancel_run_now
from jobengine.runs.service import get_run
from jobengine.store.database import transaction


def cancel_run(
    engine: Engine,
    run_id: int,
    *,
    tenant_id: str | None,
    actor: str,
    reason: str,
    revoker: TaskRevoker | None,
    origin: Origin | None = None,
) -> tuple[list[Job], list[str]]:
    """The jobs this cancel moved and the tasks it revoked; both empty when the run was
    already cancelled (filed in the audit log as a cancel that changed nothing)."""
    try:
        _, cancelled, revoked = cancel_run_now(
            engine,
            run_id,
            tenant_id=tenant_id,
            actor=actor,
            reason=reason,
            revoker=revoker,
            origin=origin,
        )
    except RunAlreadyFinal as exc:
        if exc.status != RunStatus.CANCELLED.value:
            raise
        if origin is not None:
            with transaction(engine) as conn:
                run = get_run(conn, run_id, tenant_id)
                record(
                    conn,
                    origin,
                    "run.cancel",
                    object_id=run_id,
                    tenant=run.tenant_id,
                    detail={"reason": reason, "changed": False, "jobsCancelled": 0},
                )
        return [], []
    return cancelled, revoked
