"""The refusal of a submission over its tenant's quota."""

from __future__ import annotations

from jobengine.errors import JobEngineError

RETRY_AFTER_SECONDS = 5
"""What a refused producer is told to wait: the quota frees as the tenant's jobs start, which
the engine cannot predict, so a short fixed wait, then the count is taken again."""


class QuotaExceeded(JobEngineError):
    """A submission would take its tenant past ``max_queued``; nothing was written."""

    code = "QUOTA_EXCEEDED"
    retryable = True

    def __init__(self, tenant_id: str, max_queued: int, queued: int, adding: int) -> None:
        super().__init__(
            f"tenant {tenant_id!r} has {queued} job(s) queued (pending or scheduled) and its"
            f" quota max_queued is {max_queued}; {adding} more would exceed it",
            hint=f"Retry after about {RETRY_AFTER_SECONDS} s, once some of the tenant's jobs"
            " have started, submit fewer at once, or ask an operator to raise the quota"
            f" (`jobengine quotas set {tenant_id} --max-queued N`).",
        )
        self.tenant_id = tenant_id
        self.max_queued = max_queued
        self.queued = queued
        self.adding = adding
        self.retry_after_seconds = RETRY_AFTER_SECONDS


class QuotaNotFound(JobEngineError):
    """A tenant without a quota row, or a queue that is not fair-shared, was named."""

    code = "QUOTA_NOT_FOUND"
    hint = "List them with `jobengine quotas list` (or GET /api/v1/quotas)."
