"""What a handler receives: its job, and the two ways it talks back while it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jobengine.failures import JobFailure


class JobCancelled(JobFailure):
    """Raised by ``JobContext.raise_if_cancelled``: the job was cancelled or its lease lost."""

    code = "CANCELLED"


@dataclass
class JobContext:
    job_id: int
    type: str
    attempt: int
    payload: Any
    lease_token: int
    data: Any = None
    """The payload decoded into the type's ``payload_model``, when it declares one."""
    _report: Callable[[dict[str, Any]], bool] = field(repr=False, default=lambda _p: True)
    _still_held: Callable[[], bool] = field(repr=False, default=lambda: True)

    def report_progress(self, fraction: float, message: str = "") -> None:
        """Store progress on the job (0.0 to 1.0); a lost lease makes it a no-op."""
        clamped = min(max(float(fraction), 0.0), 1.0)
        self._report({"fraction": clamped, "message": message[:500]})

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled or this worker lost its lease: stop soon."""
        return not self._still_held()

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise JobCancelled(f"job {self.job_id} was cancelled or its lease was lost")
