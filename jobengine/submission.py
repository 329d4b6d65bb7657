"""Turning a producer's request into a stored job: validation first, then one statement.

Every refusal happens before anything is written, so a rejected submission leaves no trace.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from sqlalchemy import Connection

from config.settings import get_settings
from jobengine import guard, tracing
from jobengine.catalogue import catalogue_of
from jobengine.domain.job import Job, NewJob
from jobengine.errors import (
    CommandTypesDisabled,
    DuplicateIdempotencyKey,
    NetworkNotAllowed,
    PayloadNotSerializable,
    PayloadTooLarge,
    RepeatedIdempotencyKey,
    ValidationError,
)
from jobengine.job_types import JobTypes, JobTypeSpec
from jobengine.limits.admission import admit, lease_for, slots_wanted
from jobengine.limits.leases import Drawn, leases_of
from jobengine.quotas.admission import check_quotas, held_back
from jobengine.retry_policy import RetryPolicy
from jobengine.storable import refuse_nul
from jobengine.store.jobs_repository import JobsRepository

PRIORITY_MIN, PRIORITY_MAX = 0, 9


def encode_payload(payload: Any, max_bytes: int) -> str:
    """Compact, key-sorted JSON of ``payload``; its size is what the limit counts."""
    try:
        text = json.dumps(payload, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PayloadNotSerializable(
            f"payload is not JSON-serialisable: {exc}",
            hint="Send only dicts, lists, strings, numbers, booleans and null (no NaN).",
        ) from exc
    size = len(text.encode())
    if size > max_bytes:
        raise PayloadTooLarge(
            f"payload is {size} bytes, over the limit of {max_bytes}",
            hint="Store large inputs elsewhere and pass a reference, or raise "
            "JOBENGINE_MAX_PAYLOAD_BYTES.",
        )
    return text


def refuse_disabled_command_type(spec: JobTypeSpec, commands_enabled: bool) -> None:
    """A type that runs commands on the workers is accepted only where the installation opted in.

    The API calls this before its scope check too, so a disabled installation answers the
    same whatever the key.
    """
    if spec.runs_commands and not commands_enabled:
        raise CommandTypesDisabled(
            f"job type {spec.name!r} runs commands on the workers, which this installation"
            " does not allow (JOBENGINE_COMMAND_TYPES_ENABLED is off)"
        )


def validate(
    new: NewJob,
    *,
    max_payload_bytes: int,
    types: JobTypes,
    sealed: bool | None = None,
    commands_enabled: bool | None = None,
) -> NewJob:
    """Check a submission; returns it with the type's default queue applied.

    The payload is judged by the type's JSON Schema as ``types`` holds it, never by handler
    code, so a producer that knows the type only by name is judged like a worker would.
    ``sealed`` and ``commands_enabled`` default to the installation's settings, so no
    producer can forget them.
    """
    refuse_nul(
        {
            "type": new.type,
            "tenant_id": new.tenant_id,
            "project_id": new.project_id,
            "queue": new.queue,
            "idempotency_key": new.idempotency_key,
        }
    )
    spec = types.get(new.type)
    if sealed is None:
        sealed = get_settings().sealed
    if commands_enabled is None:
        commands_enabled = get_settings().command_types_enabled
    refuse_disabled_command_type(spec, commands_enabled)
    if sealed and spec.needs_network:
        raise NetworkNotAllowed(f"job type {new.type!r} needs the network; refused in sealed mode")
    if "\\u0000" in encode_payload(new.payload, max_payload_bytes):  # JSON escapes every NUL
        refuse_nul({"payload": new.payload})
    spec.validate_payload(new.payload)
    if new.retry_policy is not None:
        RetryPolicy.resolve(spec.retry_policy, new.retry_policy)
    if not PRIORITY_MIN <= new.priority <= PRIORITY_MAX:
        raise ValidationError(
            f"priority {new.priority} is out of range",
            hint=f"Use an integer from {PRIORITY_MIN} (lowest) to {PRIORITY_MAX} (highest).",
        )
    if not new.tenant_id or not new.project_id:
        raise ValidationError(
            "tenant_id and project_id must be non-empty", hint="Name the tenant and project."
        )
    if new.not_before is not None and new.not_before.tzinfo is None:
        raise ValidationError(
            "not_before has no timezone", hint="Pass an aware datetime, e.g. in UTC."
        )
    if new.scheduled_for is not None and new.scheduled_for.tzinfo is None:
        raise ValidationError(
            "scheduled_for has no timezone", hint="Pass an aware datetime, e.g. in UTC."
        )
    if new.time_limit_seconds is not None and not new.time_limit_seconds > 0:
        raise ValidationError(
            f"time_limit_seconds {new.time_limit_seconds} is not positive",
            hint="Give the longest one attempt may run, in seconds, or leave it unset.",
        )
    queue = new.queue if new.queue != "default" else spec.queue
    limit = new.time_limit_seconds or spec.time_limit_seconds
    if queue == new.queue and limit == new.time_limit_seconds:
        return new
    return replace(new, queue=queue, time_limit_seconds=limit)


def request_hash(new: NewJob) -> str:
    """Fingerprint of what was asked, to tell a retried request from a conflicting one."""
    body = {
        "type": new.type,
        "payload": new.payload,
        "project_id": new.project_id,
        "queue": new.queue,
        "priority": new.priority,
        "retry_policy": new.retry_policy,
        "not_before": new.not_before.isoformat() if new.not_before else None,
        "time_limit_seconds": new.time_limit_seconds,
    }
    if new.scheduled_for is not None:  # only where set, so older requests keep their hashes
        body["scheduled_for"] = new.scheduled_for.isoformat()
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def submit(
    conn: Connection,
    new: NewJob,
    *,
    max_payload_bytes: int = 256 * 1024,
    types: JobTypes | None = None,
    actor: str = "producer",
    dispatching: bool = False,
    sealed: bool | None = None,
    commands_enabled: bool | None = None,
) -> tuple[Job, bool]:
    """Store a job inside the caller's transaction; returns it and whether it is new.

    A job with a future ``not_before`` stays ``pending`` until the scheduler moves it, and so
    does one whose rate limit gives it a later slot (``limits.admission``); any other is
    ``scheduled`` at once. An ``idempotency_key`` seen before with the same request returns the
    original job; with a different request it raises ``DuplicateIdempotencyKey``. ``types``
    defaults to this process's cached catalogue, read through ``conn``.
    """
    types = types if types is not None else catalogue_of(conn)
    new = validate(
        new,
        max_payload_bytes=max_payload_bytes,
        types=types,
        sealed=sealed,
        commands_enabled=commands_enabled,
    )
    check_quotas(conn, [new])
    [held] = held_back(conn, [new])
    with tracing.submitting(conn, "submit", queue=new.queue, jobs=1, actor=actor) as span:
        job, created = _store_one(conn, new, actor=actor, dispatching=dispatching and not held)
        span.set_attribute("jobengine.job.id", job.id)
    return job, created


def _store_one(conn: Connection, new: NewJob, *, actor: str, dispatching: bool) -> tuple[Job, bool]:
    fingerprint = request_hash(new) if new.idempotency_key else None
    slots = slots_wanted(conn, [new])
    create = partial(
        guard.create_job,
        conn,
        new,
        schedule=new.not_before is None,
        actor=actor,
        request_hash=fingerprint,
        dispatching=dispatching,
    )
    # Rate limits: tokens from this process's leases when they can give them, else booked.
    lease = lease_for(conn, slots) if slots and not new.idempotency_key else None
    created = None if lease is None else create(lease=lease.params())
    if lease is not None and created is None:
        leases_of(conn).refused(lease)
    if created is None:
        created = create(rate_limit_slots=slots)
    if created is not None:
        return created, True
    assert new.idempotency_key is not None
    found = JobsRepository(conn).find_by_idempotency_key(new.tenant_id, new.idempotency_key)
    if found is None:
        raise DuplicateIdempotencyKey(
            f"idempotency key {new.idempotency_key!r} is being used by a concurrent request"
        )
    job, original_hash = found
    if original_hash != fingerprint:
        raise DuplicateIdempotencyKey(
            f"idempotency key {new.idempotency_key!r} was already used with a different request"
        )
    return job, False


def _params(lease: Drawn | None) -> dict[str, Any] | None:
    return None if lease is None else lease.params()


def refuse_repeated_keys(jobs: Sequence[NewJob]) -> None:
    """One idempotency key names one job: a key given twice in one batch is the caller's
    mistake, said as such, rather than a conflict with an earlier request."""
    seen: dict[tuple[str, str], list[int]] = {}
    for index, new in enumerate(jobs):
        if new.idempotency_key:
            seen.setdefault((new.tenant_id, new.idempotency_key), []).append(index)
    for (_tenant, key), indexes in seen.items():
        if len(indexes) > 1:
            at = ", ".join(f"jobs[{i}]" for i in indexes)
            raise RepeatedIdempotencyKey(
                f"idempotency key {key!r} is repeated in this batch, at {at}"
            )


def submit_many(
    conn: Connection,
    jobs: Sequence[NewJob],
    *,
    max_payload_bytes: int = 256 * 1024,
    types: JobTypes | None = None,
    actor: str = "producer",
    dispatching: bool = False,
    sealed: bool | None = None,
    commands_enabled: bool | None = None,
) -> list[tuple[Job, bool]]:
    """``submit`` for a batch, in order: every job is validated and the batch's quotas
    checked before any is written (all or nothing), and those without idempotency keys are
    stored in one statement (two when some go to the leader to publish)."""
    types = types if types is not None else catalogue_of(conn)
    refuse_repeated_keys(jobs)
    checked = [
        validate(
            new,
            max_payload_bytes=max_payload_bytes,
            types=types,
            sealed=sealed,
            commands_enabled=commands_enabled,
        )
        for new in jobs
    ]
    check_quotas(conn, checked)
    held = held_back(conn, checked)
    queues = {new.queue for new in checked}
    with tracing.submitting(
        conn,
        "submit" if len(checked) == 1 else "submit_batch",
        queue=next(iter(queues)) if len(queues) == 1 else None,
        jobs=len(checked),
        actor=actor,
    ) as span:
        stored = _store_many(conn, checked, held, actor=actor, dispatching=dispatching)
        if len(stored) == 1:
            span.set_attribute("jobengine.job.id", stored[0][0].id)
        return stored


def _store_many(
    conn: Connection,
    checked: Sequence[NewJob],
    held: Sequence[bool],
    *,
    actor: str,
    dispatching: bool,
) -> list[tuple[Job, bool]]:
    plain = [(new, h) for new, h in zip(checked, held, strict=True) if not new.idempotency_key]
    # Jobs the leader publishes (fair-shared queue, capped tenant) go in without the mark;
    # each group takes its rate-limit slots before it is written.
    created: dict[bool, Iterator[Job]] = {}
    for h in (False, True):
        group = [new for new, g in plain if g is h]
        write = partial(guard.create_jobs, conn, actor=actor, dispatching=dispatching and not h)
        admitted = admit(conn, group)
        written = write(admitted.jobs, births=admitted.births, lease=_params(admitted.lease))
        if admitted.lease is not None and group and not written:
            leases_of(conn).refused(admitted.lease)
            admitted = admit(conn, group, lease=False)
            written = write(admitted.jobs, births=admitted.births)
        created[h] = iter(written)
    stored: list[tuple[Job, bool]] = []
    for new, h in zip(checked, held, strict=True):
        if new.idempotency_key:
            stored.append(_store_one(conn, new, actor=actor, dispatching=dispatching and not h))
        else:
            stored.append((next(created[h]), True))
    return stored
