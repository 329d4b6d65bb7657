"""Errors a handler raises to say how its job failed.

They are not engine errors (``jobengine.errors``): they describe the job's own outcome and are
stored on the job as its ``last_error``. The retry policy matches them by class name.
"""

from __future__ import annotations

from typing import Any


class JobFailure(Exception):
    """A failure with a stable error code and structured details kept with the job."""

    code = "HANDLER_ERROR"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class NonRetryableError(JobFailure):
    """Retrying cannot help (bad input, a permanent refusal): the job fails for good."""

    code = "NON_RETRYABLE"


class PoisonMessage(NonRetryableError):
    """The message cannot be processed at all: undecodable payload or no handler."""

    code = "POISON_MESSAGE"


class CommandFailed(JobFailure):
    """A shell command exited non-zero; exit code and bounded output are in ``details``."""

    code = "COMMAND_FAILED"


class LeaseExpired(JobFailure):
    """The worker stopped heartbeating (killed, cut off, frozen): recorded by the reaper."""

    code = "LEASE_EXPIRED"
