"""What one tick did, and the rows it set aside because processing them raised."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("jobengine.maintenance")

SET_ASIDE_SECONDS = 60.0
"""A row that raised is not tried again for this long, so it costs one log line a minute,
not one a tick, while the rows behind it go on."""


@dataclass
class TickReport:
    leader: bool
    rescued: list[int] = field(default_factory=list)
    """Jobs whose running lease expired (now failed or rescheduled)."""
    returned: list[int] = field(default_factory=list)
    """Jobs claimed but never started, given back to ``scheduled``."""
    promoted: list[int] = field(default_factory=list)
    dispatched: list[int] = field(default_factory=list)
    admitted: list[int] = field(default_factory=list)
    """Jobs of limited queues published because a slot was free."""
    redispatched: list[int] = field(default_factory=list)
    forgotten: int = 0
    """Published jobs whose messages the broker lost (it restarted empty): published again."""
    set_aside: list[int] = field(default_factory=list)
    """Rows that raised and were skipped this tick (see ``SetAside``)."""
    # ---- schedules (issue 15) ----
    fired: list[int] = field(default_factory=list)
    """Jobs created for schedules' slots."""
    slots_skipped: int = 0
    """Schedules' slots recorded as skipped (missed, overlap, refused)."""
    next_slot_in_seconds: float | None = None
    """When the next schedule's slot comes: the loop wakes for it."""
    # ---- end schedules ----
    wake_in_seconds: float | None = None
    """When the promoter needs to run again, if before the next interval: the next pending
    job's ``not_before`` (a rate limit's slot, a start time), or a rate limit's watch."""


class SetAside:
    """Rows whose processing raised: skipped and reported, counted per service.

    ``skipped_total`` is the counter an operator reads (also logged with each row), by service.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[int, float] = {}
        self.skipped_total: Counter[str] = Counter()

    def holds(self, job_id: int) -> bool:
        until = self._until.get(job_id)
        if until is None:
            return False
        if until <= self._clock():
            del self._until[job_id]
            return False
        return True

    def add(self, service: str, job_id: int, exc: BaseException, report: TickReport) -> None:
        self._until[job_id] = self._clock() + SET_ASIDE_SECONDS
        self.skipped_total[service] += 1
        report.set_aside.append(job_id)
        log.error(
            "maintenance_row_set_aside",
            service=service,
            job_id=job_id,
            error=f"{type(exc).__name__}: {exc}",
            retry_in_seconds=SET_ASIDE_SECONDS,
            skipped_total=self.skipped_total[service],
        )
