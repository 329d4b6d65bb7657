"""What operators do with dead letters: list, show, replay (one or by filter), discard, purge.

Every command is safe to run twice. A replay is the guard's ``failed → scheduled`` with the
actor and reason in its history row, taken under a lock on the entry's row, so two terminals
replaying the same entry at once replay it once: the second finds it ``replayed`` and says so.
Publishing the replayed job happens after commit; without a publisher (or if the broker is
down) the leader publishes it within ``dispatch_grace_seconds``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy import Connection, Engine

from jobengine import guard
from jobengine.audit import Origin, record
from jobengine.audit.record import attach_jobs
from jobengine.catalogue import Catalogue
from jobengine.dispatch import Publisher, publish_jobs
from jobengine.domain.dead_letter import DeadLetter, DeadLetterStatus
from jobengine.domain.status import JobStatus
from jobengine.errors import StoreError, UnknownJobType, ValidationError
from jobengine.guard import Step
from jobengine.job_types import JobTypes
from jobengine.producer import dispatch_ref
from jobengine.retry_policy import RetryPolicy
from jobengine.store.database import transaction
from jobengine.store.dead_letter_repository import (
    DeadLetterCount,
    DeadLetterFilter,
    DeadLetterPage,
    DeadLetterRepository,
    DeadLetterTotal,
)
from jobengine.store.jobs_repository import JobsRepository
from jobengine.submission import encode_payload

log = structlog.get_logger("jobengine.dead_letters")


class DeadLetterNotFound(StoreError):
    code = "DEAD_LETTER_NOT_FOUND"
    hint = "List dead letters with `jobengine dlq list` and use an id from there."

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} does not exist")


class DeadLetterDiscarded(StoreError):
    code = "DEAD_LETTER_DISCARDED"
    hint = "A discarded dead letter is never replayed; submit the job again if it must run."

    def __init__(self, entry: DeadLetter) -> None:
        super().__init__(
            f"dead letter {entry.id} (job {entry.job_id}) was discarded"
            f" by {entry.status_changed_by or 'an operator'}; it cannot be replayed"
        )


class JobNotFailed(StoreError):
    code = "JOB_NOT_FAILED"
    hint = "Only a job that failed for good can be retried; `jobengine jobs get` shows its state."

    def __init__(self, job_id: int, status: str) -> None:
        super().__init__(f"job {job_id} is {status}, not failed; there is nothing to retry")


class DeadLetterNotOpen(StoreError):
    code = "DEAD_LETTER_NOT_OPEN"
    hint = "Only open dead letters can be discarded; this one was replayed (see `dlq show`)."

    def __init__(self, entry: DeadLetter) -> None:
        super().__init__(f"dead letter {entry.id} was replayed; there is nothing to discard")


class NoHandlerForType(ValidationError):
    """Refused only when the catalogue has never heard of the type: a type that no live
    worker handles right now is still replayed, and waits for one."""

    code = "NO_HANDLER"

    def __init__(self, entry: DeadLetter, known: list[str]) -> None:
        super().__init__(
            f"dead letter {entry.id}: job type {entry.type!r} is not in the catalogue;"
            " no worker would run a replay",
            hint="Start a worker that handles the type (its module in JOBENGINE_HANDLER_MODULES)"
            f" so it announces it, or discard the entry. In the catalogue: {', '.join(known)}.",
        )


class ReplayOutcome(StrEnum):
    REPLAYED = "replayed"
    ALREADY_REPLAYED = "already_replayed"


@dataclass(frozen=True, slots=True)
class Replay:
    dead_letter_id: int
    job_id: int
    outcome: ReplayOutcome
    replay_id: int | None = None


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    actor: str
    reason: str | None = None
    payload_patch: dict[str, Any] | None = None
    """Merged into the job's payload (top-level keys replaced, RFC 7386 style)."""
    fresh_budget: bool = False
    """Grant the RetryPolicy's full budget again; without it the replay is one attempt."""


@dataclass
class BulkReplayReport:
    selected: list[DeadLetter] = field(default_factory=list)
    replayed: list[Replay] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    """Entries not replayed, with why (refused, or already replayed by someone else)."""
    dry_run: bool = False


def merge_patch(payload: Any, patch: dict[str, Any]) -> Any:
    """RFC 7386 merge: objects merge key by key, ``null`` deletes, anything else replaces."""
    if not isinstance(payload, dict):
        payload = {}
    merged = dict(payload)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict):
            merged[key] = merge_patch(merged.get(key), value)
        else:
            merged[key] = value
    return merged


class DeadLetters:
    """The operators' service over dead letters, for the CLI and the API alike."""

    def __init__(
        self,
        engine: Engine,
        *,
        publisher: Publisher | None = None,
        types: JobTypes | None = None,
        max_payload_bytes: int = 256 * 1024,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.types = types if types is not None else Catalogue(engine)
        self.max_payload_bytes = max_payload_bytes

    def page(self, flt: DeadLetterFilter, *, after_id: int = 0, limit: int = 100) -> DeadLetterPage:
        with transaction(self.engine) as conn:
            return DeadLetterRepository(conn).list(flt, after_id=after_id, limit=limit)

    def total(self, flt: DeadLetterFilter) -> DeadLetterTotal:
        """How many entries match, as a listing shows beside its page."""
        with transaction(self.engine) as conn:
            return DeadLetterRepository(conn).total(flt)

    def get(self, dead_letter_id: int, tenant_id: str | None = None) -> DeadLetter:
        with transaction(self.engine) as conn:
            entry = DeadLetterRepository(conn).get(dead_letter_id)
        if entry is None or (tenant_id is not None and entry.tenant_id != tenant_id):
            raise DeadLetterNotFound(f"dead letter {dead_letter_id}")
        return entry

    def id_for_job(self, job_id: int, tenant_id: str | None = None) -> int:
        """The job's entry, open or not (replaying a replayed entry is a harmless no-op);
        ``JobNotFailed`` when the job never failed for good."""
        with transaction(self.engine) as conn:
            job = JobsRepository(conn).get(job_id)
            found = DeadLetterRepository(conn).id_for_job(job_id)
        if tenant_id is not None and job.tenant_id != tenant_id:
            raise DeadLetterNotFound(f"job {job_id}")
        if found is None:
            raise JobNotFailed(job_id, job.status.value)
        return found

    def counts(self) -> list[DeadLetterCount]:
        with transaction(self.engine) as conn:
            return DeadLetterRepository(conn).counts()

    def replay(
        self,
        dead_letter_id: int,
        options: ReplayOptions,
        tenant_id: str | None = None,
        *,
        origin: Origin | None = None,
        audit_entry: int | None = None,
    ) -> Replay:
        """Send one entry's job back to ``scheduled``; a second call finds it replayed.

        ``origin`` files the replay in the audit log in its transaction; a bulk replay passes
        its own ``audit_entry`` instead, which each replay adds its job to, in its transaction.
        """
        with transaction(self.engine) as conn:
            letters = DeadLetterRepository(conn)
            entry = letters.lock(dead_letter_id)
            if entry is None or (tenant_id is not None and entry.tenant_id != tenant_id):
                raise DeadLetterNotFound(f"dead letter {dead_letter_id}")
            if entry.status is DeadLetterStatus.REPLAYED:
                if origin is not None:
                    _audit_replay(conn, origin, entry, options, changed=False)
                return Replay(entry.id, entry.job_id, ReplayOutcome.ALREADY_REPLAYED)
            if entry.status is DeadLetterStatus.DISCARDED:
                raise DeadLetterDiscarded(entry)
            try:
                spec = self.types.get(entry.type)
            except UnknownJobType:
                raise NoHandlerForType(entry, self.types.names()) from None
            job = JobsRepository(conn).get(entry.job_id)
            policy = RetryPolicy.resolve(spec.retry_policy, job.retry_policy)
            payload = None
            if options.payload_patch is not None:
                payload = merge_patch(job.payload, options.payload_patch)
                encode_payload(payload, self.max_payload_bytes)
            budget_start = job.attempt if options.fresh_budget else job.attempt - policy.max_retries
            letters.prepare_replay(job.id, budget_start, payload)
            moved = guard.transition(
                conn,
                job.id,
                Step(JobStatus.SCHEDULED, options.reason or "replayed from the dead-letter queue"),
                actor=options.actor,
                details={
                    "dead_letter_id": entry.id,
                    "fresh_budget": options.fresh_budget,
                    "payload_patched": options.payload_patch is not None,
                },
            )
            replay_id = letters.record_replay(
                entry,
                actor=options.actor,
                reason=options.reason,
                attempt=job.attempt,
                payload_patch=options.payload_patch,
                fresh_budget=options.fresh_budget,
            )
            if origin is not None:
                _audit_replay(conn, origin, entry, options, changed=True)
            if audit_entry is not None:
                attach_jobs(conn, audit_entry, [job.id])
        log.info(
            "dead_letter_replayed", dead_letter_id=entry.id, job_id=job.id, actor=options.actor
        )
        if self.publisher is not None:
            publish_jobs(self.engine, self.publisher, [dispatch_ref(moved.job)])
        return Replay(entry.id, entry.job_id, ReplayOutcome.REPLAYED, replay_id)

    def select(self, flt: DeadLetterFilter) -> Iterator[DeadLetter]:
        """Every open entry matching ``flt`` that exists now, in id order."""
        with transaction(self.engine) as conn:
            bound = DeadLetterRepository(conn).max_id()
        flt = dataclasses.replace(
            flt,
            statuses=(DeadLetterStatus.OPEN,),
            max_id=bound if flt.max_id is None else min(bound, flt.max_id),
        )
        after = 0
        while True:
            page = self.page(flt, after_id=after, limit=500)
            yield from page.items
            if page.next_cursor is None:
                return
            after = page.next_cursor

    def replay_many(
        self,
        flt: DeadLetterFilter,
        options: ReplayOptions,
        *,
        dry_run: bool = False,
        max_per_second: float | None = None,
        on_progress: Callable[[DeadLetter, Replay | None], None] | None = None,
        origin: Origin | None = None,
    ) -> BulkReplayReport:
        """Replay every open entry matching ``flt`` as it stood when the call began.

        Entries are fixed up front (ids up to the newest one now), so a replayed job that fails
        again during the run is not replayed a second time. ``max_per_second`` paces the
        replays so a bulk replay does not flood the fleet. A dry run returns the same selection
        and writes nothing.

        ``origin`` files one audit entry for the whole replay, before the first one, naming
        the filter and the selection; each replay adds its job to it in its own transaction,
        so the entry's jobs are exactly those replayed, even if the run stops half-way.
        """
        report = BulkReplayReport(selected=list(self.select(flt)), dry_run=dry_run)
        if dry_run:
            return report
        audit_entry = None
        if origin is not None:
            with transaction(self.engine) as conn:
                audit_entry = record(
                    conn,
                    origin,
                    "dlq.replay",
                    tenant=flt.tenant_id,
                    detail={
                        "filter": _filter_detail(flt),
                        "selected": len(report.selected),
                        "reason": options.reason,
                        "freshBudget": options.fresh_budget,
                        "payloadPatched": options.payload_patch is not None,
                    },
                )
        interval = 1.0 / max_per_second if max_per_second else 0.0
        next_at = time.monotonic()
        for entry in report.selected:
            if interval:
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing for the fleet's sake, not synchronisation
                next_at = max(next_at, time.monotonic()) + interval
            done: Replay | None = None
            try:
                done = self.replay(
                    entry.id, options, tenant_id=flt.tenant_id, audit_entry=audit_entry
                )
            except (DeadLetterDiscarded, DeadLetterNotFound, NoHandlerForType) as exc:
                report.skipped.append((entry.id, exc.message))
            else:
                if done.outcome is ReplayOutcome.REPLAYED:
                    report.replayed.append(done)
                else:
                    report.skipped.append((entry.id, "already replayed"))
            if on_progress is not None:
                on_progress(entry, done)
        return report

    def discard(
        self,
        dead_letter_id: int,
        *,
        actor: str,
        reason: str | None,
        tenant_id: str | None = None,
        origin: Origin | None = None,
    ) -> bool:
        """Close an open entry for good; False when it was already discarded."""
        with transaction(self.engine) as conn:
            letters = DeadLetterRepository(conn)
            entry = letters.lock(dead_letter_id)
            if entry is None or (tenant_id is not None and entry.tenant_id != tenant_id):
                raise DeadLetterNotFound(f"dead letter {dead_letter_id}")
            if entry.status is DeadLetterStatus.REPLAYED:
                raise DeadLetterNotOpen(entry)
            changed = entry.status is not DeadLetterStatus.DISCARDED and letters.discard(
                dead_letter_id, actor, reason
            )
            if origin is not None:
                record(
                    conn,
                    origin,
                    "dlq.discard",
                    object_id=entry.id,
                    tenant=entry.tenant_id,
                    detail={"reason": reason, "changed": changed, "jobId": entry.job_id},
                    job_ids=[entry.job_id],
                )
            return changed

    def purge(self, before: datetime, *, origin: Origin | None = None) -> int:
        """Delete replayed and discarded entries last changed before ``before``."""
        with transaction(self.engine) as conn:
            purged = DeadLetterRepository(conn).purge(before)
            if origin is not None:
                detail = {"before": before.isoformat(), "purged": purged}
                record(conn, origin, "dlq.purge", detail=detail)
            return purged


def _audit_replay(
    conn: Connection, origin: Origin, entry: DeadLetter, options: ReplayOptions, *, changed: bool
) -> None:
    record(
        conn,
        origin,
        "dlq.replay",
        object_id=entry.id,
        tenant=entry.tenant_id,
        detail={
            "changed": changed,
            "reason": options.reason,
            "freshBudget": options.fresh_budget,
            "payloadPatched": options.payload_patch is not None,
        },
        job_ids=[entry.job_id],
    )


def _filter_detail(flt: DeadLetterFilter) -> dict[str, Any]:
    """The filter a bulk replay was asked for, as plain values."""
    return {
        k: (v.isoformat() if isinstance(v, datetime) else v)
        for k, v in dataclasses.asdict(flt).items()
        if v not in (None, (), [])
    }
