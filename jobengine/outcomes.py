"""How one attempt ended: decided once, then recorded by exactly one store call.

The attempt pipeline (``jobengine.attempt``) turns what the handler did into one of these, and
``Executor.record`` maps each to its transition:

| outcome | transition | store call |
| --- | --- | --- |
| ``Completed`` | ``running → completed`` | ``Executor.complete``, or batched: ``complete_many`` |
| ``Retry`` | ``running → failed → scheduled``, due after the countdown | ``record_retry`` |
| ``Failed`` | ``running → failed``, with the dead letter | ``Executor.record_failure`` |
| ``HandedBack`` | ``running → scheduled`` (not run, or stopped by shutdown) | ``give_back`` |

A cancel (a revoke from Flower) is not an attempt's outcome: no attempt holds the job when it
arrives, and it goes through ``cancellation.cancel_job`` like any other request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.domain.status import JobStatus


@dataclass(frozen=True, slots=True)
class Completed:
    result: Any
    target: ClassVar[JobStatus] = JobStatus.COMPLETED


@dataclass(frozen=True, slots=True)
class Retry:
    """The RetryPolicy granted another attempt, due ``countdown`` seconds from now."""

    error: dict[str, Any]
    countdown: float
    reason: str
    target: ClassVar[JobStatus] = JobStatus.SCHEDULED


@dataclass(frozen=True, slots=True)
class Failed:
    """Failed for good; the dead letter says why."""

    error: dict[str, Any]
    dead_letter_reason: DeadLetterReason
    target: ClassVar[JobStatus] = JobStatus.FAILED


@dataclass(frozen=True, slots=True)
class HandedBack:
    """Started with a chunk but its handler never ran, or stopped by its worker's shutdown
    bound (``jobengine.stopping``): back to ``scheduled`` for another worker, its attempt
    returned."""

    reason: str
    target: ClassVar[JobStatus] = JobStatus.SCHEDULED


Outcome = Completed | Retry | Failed | HandedBack
