"""Helpers for the leader's fleet tests: who leads (from the lease row), orphaned jobs, and
who rescued them (from ``job_history``)."""

from __future__ import annotations

from sqlalchemy import Engine, text

from jobengine import guard
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.guard import Step
from jobengine.maintenance.leadership import ROLE
from jobengine.store.database import transaction

S = JobStatus

LEADER_TTL = 2.0
REAPER_INTERVAL = 0.3
REAPER_ENV = {"JOBENGINE_LEADER_TTL_SECONDS": str(LEADER_TTL)}


def live_leader(engine: Engine) -> tuple[str, int] | None:
    """(reaper name, term) of the live maintenance lease, or None when nobody leads."""
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT holder, term FROM leadership WHERE role = :r AND expires_at > now()"),
            {"r": ROLE},
        ).first()
    return None if row is None else (str(row[0]).split("#")[0], int(row[1]))


def orphan_running_job(engine: Engine, lease_seconds: float = 0.001, n: int = 1) -> list[int]:
    """Jobs left running by a worker that vanished: their leases run out after ``lease_seconds``."""
    ids: list[int] = []
    with transaction(engine) as conn:
        for _ in range(n):
            job = guard.create_job(conn, NewJob(type="effect"), schedule=True)
            assert job is not None
            guard.transition(
                conn,
                job.id,
                [Step(S.CLAIMED), Step(S.RUNNING)],
                lease_owner="vanished-worker",
                lease_ttl_seconds=lease_seconds,
            )
            ids.append(job.id)
    return ids


def rescuers(engine: Engine, job_ids: list[int]) -> dict[int, str]:
    """Job id → the actor that took its expired lease back, for those rescued so far."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT job_id, actor FROM job_history WHERE reason = 'lease_expired' "
                "AND job_id = ANY(:ids)"
            ),
            {"ids": job_ids},
        ).all()
    return {r[0]: r[1] for r in rows}


def actions_by(engine: Engine, actor: str, since_history_id: int = 0) -> list[tuple[int, str]]:
    """(job id, reason) of every transition ``actor`` made after ``since_history_id``."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT job_id, reason FROM job_history WHERE actor = :a AND id > :h ORDER BY id"),
            {"a": actor, "h": since_history_id},
        ).all()
    return [(r[0], r[1]) for r in rows]


def last_history_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(max(id), 0) FROM job_history")).scalar_one())
