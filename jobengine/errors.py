"""The engine's error tree: one root, a subtree per layer.

Driver errors are kept as ``__cause__``. Each error carries a stable ``code``, a ``hint`` that
tells the caller how to fix it, and whether retrying the same call may succeed, so the API's
envelope and the CLI's one-line errors are built from the exception alone.
"""

from __future__ import annotations


class JobEngineError(Exception):
    """Root of every error the engine raises on purpose."""

    code = "JOBENGINE_ERROR"
    hint = ""
    retryable = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint


class ValidationError(JobEngineError):
    """The caller sent something the engine cannot accept as it is."""

    code = "VALIDATION_ERROR"


class UnknownJobType(ValidationError):
    code = "UNKNOWN_JOB_TYPE"


class UnknownState(ValidationError):
    code = "UNKNOWN_STATE"


class NetworkNotAllowed(ValidationError):
    code = "SEALED_MODE"
    hint = (
        "This installation is sealed (JOBENGINE_SEALED=1): only job types that need no network run."
    )


class CommandTypesDisabled(ValidationError):
    """A job type that runs commands on the workers, on an installation that has not opted in."""

    code = "COMMAND_TYPES_DISABLED"
    hint = (
        "This installation does not run command-running job types (e.g. shell); an operator "
        "enables them with JOBENGINE_COMMAND_TYPES_ENABLED=true on its API, producers and workers."
    )


class PayloadNotSerializable(ValidationError):
    code = "PAYLOAD_NOT_SERIALIZABLE"


class PayloadInvalid(ValidationError):
    code = "PAYLOAD_INVALID"


class PayloadTooLarge(ValidationError):
    code = "PAYLOAD_TOO_LARGE"


class MalformedPayloadSchema(ValidationError):
    """A job type's payload model gives no usable JSON Schema: its worker must not start."""

    code = "MALFORMED_PAYLOAD_SCHEMA"

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(
            f"job type {name!r} declares a payload schema that is not valid JSON Schema: {problem}",
            hint="Fix the type's payload_model (its fields, json_schema_extra or custom schema) so"
            " that model_json_schema() returns a valid Draft 2020-12 schema.",
        )


class StoreError(JobEngineError):
    """Errors of the Postgres store and of the guard over it."""

    code = "STORE_ERROR"


class StoreUnavailable(StoreError):
    code = "STORE_UNAVAILABLE"
    hint = "Check that Postgres is running and JOBENGINE_DATABASE_URL points at it, then retry."
    retryable = True


class StoreOverloaded(StoreUnavailable):
    """Postgres is up but saturated: no connection slot free (53300), or none of the pool's
    connections came back within its checkout timeout. Nothing was written; the caller
    should come back a little later rather than at once."""

    code = "OVERLOADED"
    hint = (
        "The job store is saturated; retry after the seconds Retry-After says (or about a "
        "second). Operators: see the connection sizing in deploy/RUNBOOK.md."
    )
    retry_after_seconds = 1


class StoreConflict(StoreError):
    """Postgres aborted the statement to break a conflict (deadlock, serialization failure,
    lock timeout); nothing was written, and the same call run again may well succeed."""

    code = "STORE_CONFLICT"
    hint = "A conflicting transaction won this time; retry the call."
    retryable = True


class StoreStatementCancelled(StoreError):
    """The statement was cancelled (``statement_timeout`` or ``pg_cancel_backend``); the
    connection itself is fine. Not retried on its own: a cancel is often on purpose."""

    code = "STORE_STATEMENT_CANCELLED"
    hint = "The statement ran into statement_timeout or was cancelled by an operator."
    retryable = True


class JobNotFound(StoreError):
    code = "JOB_NOT_FOUND"
    hint = "Check the job id; list jobs with `jobengine jobs list`."

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} does not exist")
        self.job_id = job_id


class TransitionRefused(StoreError):
    """A transition the guard would not perform; nothing was written."""


class InvalidTransition(TransitionRefused):
    code = "INVALID_TRANSITION"

    def __init__(self, job_id: int, current: str, wanted: str) -> None:
        super().__init__(
            f"job {job_id} cannot go from {current} to {wanted}",
            hint=f"From {current} the allowed next states are listed by `jobengine states`.",
        )
        self.job_id = job_id
        self.current = current
        self.wanted = wanted


class StaleLease(TransitionRefused):
    """The caller's fencing token is not the job's current one: its lease was lost."""

    code = "STALE_LEASE"
    hint = "This worker's lease was taken over; it must stop working on the job."

    def __init__(self, job_id: int, presented: int | None, current: int | None) -> None:
        super().__init__(
            f"job {job_id}: lease token {presented} is stale (current token is {current})"
        )
        self.job_id = job_id
        self.presented = presented
        self.current = current


class LeaseNotExpired(TransitionRefused):
    """A rescue was asked for a lease that a heartbeat has since extended."""

    code = "LEASE_NOT_EXPIRED"

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id}: its lease is still alive; nothing to rescue")
        self.job_id = job_id


class NotDue(TransitionRefused):
    """A claim arrived before the job's ``not_before``: its message came early (a duplicate)."""

    code = "NOT_DUE"
    hint = "The job is published again when it is due; this message runs nothing."

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} is not due yet")
        self.job_id = job_id


class DuplicateIdempotencyKey(StoreError):
    code = "DUPLICATE_IDEMPOTENCY_KEY"
    hint = "Reuse an Idempotency-Key only with the same request body, or pick a new key."


class RepeatedIdempotencyKey(ValidationError):
    """Two jobs of one batch carry the same idempotency key: the request contradicts itself."""

    code = "REPEATED_IDEMPOTENCY_KEY"
    hint = "Give each job of a batch its own idempotency key, or send the job once."
