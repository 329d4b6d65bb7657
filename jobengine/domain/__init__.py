"""The domain: states, the transition table, the job entity and its events."""

from jobengine.domain.status import FINAL_STATES, JobStatus
from jobengine.domain.transitions import TRANSITIONS, Transition, allowed_sources, is_allowed

__all__ = [
    "FINAL_STATES",
    "TRANSITIONS",
    "JobStatus",
    "Transition",
    "allowed_sources",
    "is_allowed",
]
