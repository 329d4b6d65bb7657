"""What one chunk message did to each of its jobs, as Celery (and so Flower) is told.

A chunk carries several jobs under one Celery task; Celery sees one state for all of them.
SUCCESS with a count of handlers run said nothing of how each ended, so a chunk whose every job
failed looked fine in Flower. The report counts each outcome and names the jobs that failed;
a chunk with any failed job ends FAILURE (``workers.tasks``). Postgres already holds each
job's own outcome: the report changes nothing there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobengine.outcomes import Completed, Failed, Outcome, Retry


@dataclass
class ChunkReport:
    jobs: int
    completed: int = 0
    failed_job_ids: list[int] = field(default_factory=list)
    """Jobs whose attempt failed here: retried later or failed for good."""

    def add(self, job_id: int, outcome: Outcome) -> None:
        if isinstance(outcome, Completed):
            self.completed += 1
        elif isinstance(outcome, Retry | Failed):
            self.failed_job_ids.append(job_id)

    @property
    def failed(self) -> int:
        return len(self.failed_job_ids)

    def as_result(self) -> dict[str, Any]:
        """The task's result as Flower shows it (camelCase, as every surface names it)."""
        return {
            "jobs": self.jobs,
            "completed": self.completed,
            "failed": self.failed,
            "failedJobIds": list(self.failed_job_ids),
            # lost their lease while waiting, or handed back when the chunk stopped early
            "notRun": self.jobs - self.completed - self.failed,
        }
