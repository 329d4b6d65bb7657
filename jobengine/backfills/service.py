"""Writing a backfill (or answering its dry run), reading it with its progress, cancelling it.

Creating a backfill writes one row and no jobs: the leader creates the slots' jobs a batch a
tick (``creation``), so a request for 100,000 slots answers at once and never floods the
queue. Everything a batch could refuse for every slot (the range, the cadence, the job
template against its type) is checked here first, so a refusal writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from itertools import islice

from sqlalchemy import Connection

from config.settings import get_settings
from jobengine import guard
from jobengine.audit import Origin, record
from jobengine.backfills import plan
from jobengine.backfills.errors import (
    BackfillInvalid,
    BackfillNotFound,
    CadenceMismatch,
)
from jobengine.backfills.model import (
    Backfill,
    BackfillSpec,
    CadenceSpec,
    Plan,
    Progress,
    SlotPreview,
    Source,
)
from jobengine.backfills.repository import BackfillRepository
from jobengine.backfills.slot_jobs import slot_job
from jobengine.catalogue import catalogue_of
from jobengine.domain.status import JobStatus
from jobengine.guard import Step
from jobengine.job_types import JobTypes
from jobengine.schedules.slots import slots_between
from jobengine.submission import validate

PREVIEW = 20
"""Slots a dry run (and a created backfill's answer) lists one by one."""


@dataclass(frozen=True, slots=True)
class Created:
    backfill: Backfill | None
    """None for a dry run: nothing was written."""
    plan: Plan
    progress: Progress | None


def create(
    conn: Connection,
    spec: BackfillSpec,
    *,
    dry_run: bool,
    created_by: str,
    types: JobTypes | None = None,
    origin: Origin | None = None,
) -> Created:
    """Check ``spec``, count its slots and those that already have jobs; unless ``dry_run``,
    record the backfill for the leader to create its jobs. ``origin`` (here and in
    ``cancel``) files the act in the audit log, in ``conn``'s transaction; a dry run is none."""
    _check_pacing(spec)
    parsed = plan.cadence_of(spec.cadence)
    spec = replace(spec, cadence=CadenceSpec(parsed.cron, parsed.interval_seconds, parsed.zone))
    total, first, last = plan.count(spec)
    if first is not None:
        validate(
            slot_job(spec.tenant_id, spec.project_id, spec.job, first),
            max_payload_bytes=get_settings().max_payload_bytes,
            types=types if types is not None else catalogue_of(conn),
        )
    repo = BackfillRepository(conn)
    source = (
        repo.find_source(spec.tenant_id, spec.project_id, spec.source)
        if dry_run
        else repo.upsert_source(spec)
    )
    if source is not None:
        _same_cadence(source, spec)
    the_plan = _plan(repo, spec, source, total, first, last)
    if dry_run:
        return Created(backfill=None, plan=the_plan, progress=None)
    assert source is not None
    backfill_id = repo.insert(source, spec, the_plan, created_by)
    backfill = repo.get(backfill_id, None)
    assert backfill is not None
    if origin is not None:
        detail = {
            "source": spec.source,
            "projectId": spec.project_id,
            "start": spec.start.isoformat(),
            "end": spec.end.isoformat(),
            "jobType": spec.job.type,
            "slots": total,
        }
        record(
            conn,
            origin,
            "backfill.create",
            object_id=backfill_id,
            tenant=spec.tenant_id,
            detail=detail,
        )
    return Created(backfill=backfill, plan=the_plan, progress=repo.progress(backfill))


def get(conn: Connection, backfill_id: int, tenant_id: str | None) -> tuple[Backfill, Progress]:
    repo = BackfillRepository(conn)
    backfill = repo.get(backfill_id, tenant_id)
    if backfill is None:
        raise BackfillNotFound(f"backfill {backfill_id} not found")
    return backfill, repo.progress(backfill)


def cancel(
    conn: Connection,
    backfill_id: int,
    tenant_id: str | None,
    *,
    cancel_queued: bool,
    actor: str,
    origin: Origin | None = None,
) -> tuple[Backfill, list[int]]:
    """Stop creating its jobs; with ``cancel_queued``, also cancel those not yet claimed.
    Cancelling twice is harmless. Returns the backfill and the jobs it cancelled."""
    repo = BackfillRepository(conn)
    if repo.get(backfill_id, tenant_id) is None:
        raise BackfillNotFound(f"backfill {backfill_id} not found")
    repo.cancel(backfill_id)
    cancelled: list[int] = []
    if cancel_queued:
        queued = repo.queued_jobs(backfill_id)
        moved = guard.transition_many(
            conn, queued, Step(JobStatus.CANCELLED, "backfill cancelled"), actor=actor
        )
        cancelled = [job.id for job in moved]
    backfill = repo.get(backfill_id, tenant_id)
    assert backfill is not None
    if origin is not None:
        detail = {"cancelQueued": cancel_queued, "jobsCancelled": len(cancelled)}
        record(
            conn,
            origin,
            "backfill.cancel",
            object_id=backfill_id,
            tenant=backfill.tenant_id,
            detail=detail,
            job_ids=cancelled,
        )
    return backfill, cancelled


def _check_pacing(spec: BackfillSpec) -> None:
    pacing = spec.pacing
    if pacing.max_in_flight is not None and pacing.max_in_flight < 1:
        raise BackfillInvalid(
            f"maxInFlight {pacing.max_in_flight} is not positive",
            hint="Give the most jobs of the backfill not yet final at once (at least 1), or none.",
        )
    if pacing.max_per_second is not None and not pacing.max_per_second > 0:
        raise BackfillInvalid(
            f"maxPerSecond {pacing.max_per_second} is not positive",
            hint="Give the most jobs created a second (above 0), or none.",
        )


def _same_cadence(source: Source, spec: BackfillSpec) -> None:
    if source.cadence != spec.cadence:
        have = source.cadence
        raise CadenceMismatch(
            f"source {spec.source!r} has cadence cron={have.cron!r}"
            f" intervalSeconds={have.interval_seconds} zone={have.zone!r}; this backfill asks"
            f" cron={spec.cadence.cron!r} intervalSeconds={spec.cadence.interval_seconds}"
            f" zone={spec.cadence.zone!r}",
            hint="A source is one series of slots: use its cadence, or name another source.",
        )


def _plan(
    repo: BackfillRepository,
    spec: BackfillSpec,
    source: Source | None,
    total: int,
    first: datetime | None,
    last: datetime | None,
) -> Plan:
    cadence = plan.cadence_of(spec.cadence)
    head = list(islice(slots_between(cadence, spec.start, spec.end), PREVIEW))
    if source is None:
        return Plan(total, first, last, 0, [SlotPreview(at, None) for at in head])
    jobs = repo.existing(source.id, head)
    return Plan(
        total=total,
        first=first,
        last=last,
        existing=repo.existing_in_range(source.id, spec.start, spec.end),
        preview=[SlotPreview(at, jobs.get(at)) for at in head],
    )
