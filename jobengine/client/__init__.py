"""A Python client for jobengine's REST API, blocking (``JobEngineClient``) or asyncio
(``AsyncJobEngineClient``), with the same methods and the same typed results."""

from jobengine.client._async import AsyncJobEngineClient
from jobengine.client._backfills import (
    Backfill,
    BackfillCreated,
    BackfillPlan,
    BackfillProgress,
    BackfillRequest,
    BackfillSource,
)
from jobengine.client._base import RetryConfig
from jobengine.client._errors import (
    ApiError,
    ClientError,
    DownloadCorrupt,
    QuotaExceeded,
    TransportError,
    WaitTimeout,
)
from jobengine.client._limits import RateLimit
from jobengine.client._models import (
    FINAL_STATES,
    Artifact,
    Downloaded,
    HistoryEntry,
    Job,
    JobEvent,
    JobPage,
    JobRequest,
    JobStatus,
    JobType,
)
from jobengine.client._runs import (
    Run,
    RunDetail,
    RunEdge,
    RunEvent,
    RunJob,
    RunJobRequest,
    RunPage,
    RunRequest,
)
from jobengine.client._schedules import Schedule, ScheduledRun, ScheduleRequest, ScheduleSlot
from jobengine.client._sync import JobEngineClient
from jobengine.domain.run import TriggerRule
from jobengine.domain.status import RunStatus

__all__ = [
    "FINAL_STATES",
    "ApiError",
    "Artifact",
    "AsyncJobEngineClient",
    "Backfill",
    "BackfillCreated",
    "BackfillPlan",
    "BackfillProgress",
    "BackfillRequest",
    "BackfillSource",
    "ClientError",
    "DownloadCorrupt",
    "Downloaded",
    "HistoryEntry",
    "Job",
    "JobEngineClient",
    "JobEvent",
    "JobPage",
    "JobRequest",
    "JobStatus",
    "JobType",
    "QuotaExceeded",
    "RateLimit",
    "RetryConfig",
    "Run",
    "RunDetail",
    "RunEdge",
    "RunEvent",
    "RunJob",
    "RunJobRequest",
    "RunPage",
    "RunRequest",
    "RunStatus",
    "Schedule",
    "ScheduleRequest",
    "ScheduleSlot",
    "ScheduledRun",
    "TransportError",
    "TriggerRule",
    "WaitTimeout",
]
