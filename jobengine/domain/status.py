"""The states of a job, mirrored one to one by the ``job_status`` enum in Postgres."""

from __future__ import annotations

import enum

from jobengine.errors import UnknownState


class JobStatus(enum.StrEnum):
    """Each state names the component that moves jobs out of it."""

    PENDING = "pending"
    """Waiting for a start time, dependencies or admission. Left by the scheduler or a cancel."""
    SCHEDULED = "scheduled"
    """Eligible and handed to the broker. Left by a worker's claim or a cancel."""
    CLAIMED = "claimed"
    """A worker holds the lease but has not started. Left by that worker, the reaper or a cancel."""
    RUNNING = "running"
    """The handler runs under a heartbeat lease. Left by the worker hooks, reaper or a cancel."""
    COMPLETED = "completed"
    """Final: the handler returned."""
    FAILED = "failed"
    """Final unless the retry policy or a dead-letter replay schedules it again."""
    CANCELLED = "cancelled"
    """Final: a user or an upstream failure cancelled it."""

    @classmethod
    def parse(cls, name: str) -> JobStatus:
        """Parse a state name from a user, with an error that lists the valid ones."""
        try:
            return cls(name.strip().lower())
        except ValueError:
            valid = ", ".join(s.value for s in cls)
            raise UnknownState(
                f"unknown job state {name!r}", hint=f"Use one of: {valid}."
            ) from None


FINAL_STATES: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
)
"""States that set ``completed_at``; of these only ``failed`` can ever be left."""


class RunStatus(enum.StrEnum):
    """A run's status, derived from its jobs' final states and stored on the run."""

    RUNNING = "running"
    """Some job of the run is not final yet."""
    COMPLETED = "completed"
    """Every job is final and none failed or was cancelled by an upstream failure."""
    FAILED = "failed"
    """Every job is final and at least one failed (or was cancelled because one did)."""
    CANCELLED = "cancelled"
    """A user cancelled the run; its jobs that were not final were cancelled with it."""
