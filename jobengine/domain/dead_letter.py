"""Dead letters: jobs that failed for good, kept whole so an operator can judge and replay them.

A dead letter is written by the same statement that fails its job (see ``store.queries``), so
there is never a ``failed`` job without one, nor one without its job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from jobengine.domain.status import JobStatus

STDERR_TAIL_LINES = 20
"""Lines of a failed command's stderr a dead letter shows: the end, where it said why."""


class DeadLetterReason(StrEnum):
    """Why a job failed for good; operators filter and replay by it."""

    RETRIES_EXHAUSTED = "retries_exhausted"
    """Every attempt the RetryPolicy granted failed."""
    NON_RETRYABLE = "non_retryable"
    """The error is one the policy never retries (``NonRetryableError``, ``EgressBlocked``…)."""
    POISON = "poison"
    """The job cannot be processed at all: its payload cannot be decoded for its handler, or no
    worker has a handler for its type. Retrying the same job the same way cannot help."""
    LEASE_EXPIRED = "lease_expired"
    """Its worker stopped heartbeating (killed, cut off) and no attempts were left."""


class DeadLetterStatus(StrEnum):
    OPEN = "open"
    """Waiting for an operator."""
    REPLAYED = "replayed"
    """Sent back to ``scheduled``; reopened if the job fails for good again."""
    DISCARDED = "discarded"
    """An operator decided it will never run again."""


class ReplayOutcome(StrEnum):
    """What became of a replay, read from the job's history after it."""

    IN_FLIGHT = "in_flight"
    COMPLETED = "completed"
    FAILED_AGAIN = "failed_again"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class DeadLetterReplay:
    id: int
    dead_letter_id: int
    job_id: int
    history_id: int
    actor: str
    reason: str | None
    attempt: int
    """Attempts the job had used when it was replayed."""
    payload_patch: dict[str, Any] | None
    fresh_budget: bool
    at: datetime
    outcome: ReplayOutcome = ReplayOutcome.IN_FLIGHT


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    job_id: int
    tenant_id: str
    project_id: str
    type: str
    queue: str
    reason: DeadLetterReason
    error_code: str | None
    error_class: str | None
    error_message: str | None
    traceback: str | None
    attempts: int
    payload: Any
    """The payload as it was when the job failed (a replay may patch the job's own)."""
    timeline: list[dict[str, Any]]
    """Every transition of the job up to its failure, with the error of each failed attempt."""
    first_failed_at: datetime
    last_failed_at: datetime
    status: DeadLetterStatus
    status_changed_at: datetime
    status_changed_by: str | None
    status_reason: str | None
    replay_count: int
    job_status: JobStatus | None = None
    replays: list[DeadLetterReplay] = field(default_factory=list)
    error_details: dict[str, Any] = field(default_factory=dict)
    """What the handler attached to the job's last failure (a command's exit code and output
    tails); read with the entry, not kept in listings."""

    @property
    def exit_code(self) -> int | None:
        code = self.error_details.get("exit_code")
        return code if isinstance(code, int) and not isinstance(code, bool) else None

    @property
    def stderr_tail(self) -> str | None:
        """The last ``STDERR_TAIL_LINES`` lines of what the failed command wrote to stderr."""
        stderr = self.error_details.get("stderr")
        if not isinstance(stderr, str) or not stderr:
            return None
        return "\n".join(stderr.rstrip("\n").splitlines()[-STDERR_TAIL_LINES:])
