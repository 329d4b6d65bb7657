"""The refusal of a submission over its tenant's quota."""

from __future__ import annotations

from jobengine.errors import JobEngineError

RETRY_AFTER_SECONDS = 5
"""What a refused producer is told to wait when its tenant has no completed job to go by."""


class QuotaExceeded(JobEngineError):
    """A submission would take its tenant past ``max_queued``; nothing was written."""

    code = "QUOTA_EXCEEDED"
    retryable = True

    def __init__(
        self,
        tenant_id: str,
        max_queued: int,
        queued: int,
        adding: int,
        retry_after_seconds: int = RETRY_AFTER_SECONDS,
    ) -> None:
        super().__init__(
            f"tenant {tenant_id!r} has {queued} job(s) queued (pending or scheduled) and its"
            f" quota max_queued is {max_queued}; {adding} more would exceed it",
            hint=f"Retry after about {retry_after_seconds} s, once some of the tenant's jobs"
            " have started, submit fewer at once, or ask an operator to raise the quota"
            f" (`jobengine quotas set {tenant_id} --max-queued N`).",
        )
        self.tenant_id = tenant_id
        self.max_queued = max_queued
        self.queued = queued
        self.adding = adding
        self.retry_after_seconds = retry_after_seconds


class QuotaNotFound(JobEngineError):
    """A tenant without a quota row, or a queue that is not fair-shared, was named."""

    code = "QUOTA_NOT_FOUND"
    hint = "List them with `jobengine quotas list` (or GET /api/v1/quotas)."
