"""A Python client for jobengine's REST API, blocking (``JobEngineClient``) or asyncio
(``AsyncJobEngineClient``), with the same methods and the same typed results."""

from jobengine.client._async import AsyncJobEngineClient
from jobengine.client._base import RetryConfig
from jobengine.client._errors import (
    ApiError,
    ClientError,
    QuotaExceeded,
    TransportError,
    WaitTimeout,
)
from jobengine.client._models import (
    FINAL_STATES,
    HistoryEntry,
    Job,
    JobEvent,
    JobPage,
    JobRequest,
    JobStatus,
    JobType,
)
from jobengine.client._sync import JobEngineClient

__all__ = [
    "FINAL_STATES",
    "ApiError",
    "AsyncJobEngineClient",
    "ClientError",
    "HistoryEntry",
    "Job",
    "JobEngineClient",
    "JobEvent",
    "JobPage",
    "JobRequest",
    "JobStatus",
    "JobType",
    "QuotaExceeded",
    "RetryConfig",
    "TransportError",
    "WaitTimeout",
]
