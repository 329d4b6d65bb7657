"""What a handler receives: its job, the ways it talks back while it runs, and what it reads
from its run (its parents' results) and leaves behind (its artifacts)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from jobengine.domain.run import RunJobSpec, TriggerRule
from jobengine.failures import JobFailure
from jobengine.runs.errors import SpawnRefused

if TYPE_CHECKING:
    from jobengine.artifacts.attach import Data
    from jobengine.artifacts.model import Artifact


class JobCancelled(JobFailure):
    """Raised by ``JobContext.raise_if_cancelled``: the job was cancelled or its lease lost."""

    code = "CANCELLED"


def _cannot_spawn(job: RunJobSpec) -> int:
    raise SpawnRefused(
        f"this context has no store to spawn {job.key!r} through",
        hint="Spawn from a handler run by a worker.",
    )


@dataclass
class JobContext:
    job_id: int
    type: str
    attempt: int
    payload: Any
    lease_token: int
    data: Any = None
    """The payload decoded into the type's ``payload_model``, when it declares one."""
    scheduled_for: datetime | None = None
    """The slot the job's schedule (or backfill) created it for, in UTC; None for a job a
    producer submitted. A slot's job that starts late still reads the slot it stands for."""
    _report: Callable[[dict[str, Any]], bool] = field(repr=False, default=lambda _p: True)
    _still_held: Callable[[], bool] = field(repr=False, default=lambda: True)
    _spawn: Callable[[RunJobSpec], int] = field(repr=False, default=_cannot_spawn)
    # ---- results and artifacts (issue 13) ----
    _attach: Callable[[str, Data, str | None], Artifact] | None = field(repr=False, default=None)
    _parents: Callable[[], dict[str, Any]] = field(repr=False, default=dict)
    # ---- graceful shutdown (issue 17) ----
    _stopping: Callable[[], bool] = field(repr=False, default=lambda: False)

    def report_progress(self, fraction: float, message: str = "") -> None:
        """Store progress on the job (0.0 to 1.0); a lost lease makes it a no-op."""
        clamped = min(max(float(fraction), 0.0), 1.0)
        self._report({"fraction": clamped, "message": message[:500]})

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled or this worker lost its lease: stop soon."""
        return not self._still_held()

    @property
    def stopping(self) -> bool:
        """True once this worker reached its shutdown bound (``jobengine.stopping``): threads
        the handler started should stop too. The handler itself had ``WorkerStopping`` raised
        into it; let it propagate and the job is handed back, its attempt returned."""
        return self._stopping()

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise JobCancelled(f"job {self.job_id} was cancelled or its lease was lost")

    def spawn(
        self,
        type: str,
        payload: Any = None,
        *,
        key: str,
        queue: str | None = None,
        priority: int = 0,
        retry_policy: dict[str, Any] | None = None,
        time_limit_seconds: float | None = None,
        not_before: datetime | None = None,
        trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS,
    ) -> int:
        """Add a job to this job's run, fenced by this attempt's lease; returns its id.

        It is released at once, and every child of this job still waiting waits for it too
        (``jobengine.runs.spawn``). ``key`` names it in the run: an attempt that runs again
        and spawns the same key gets the same job back. Raises ``SpawnRefused`` when this
        job is not in a run, and ``StaleLease`` when this worker lost its lease.
        """
        return self._spawn(
            RunJobSpec(
                key=key,
                type=type,
                payload=payload,
                queue=queue,
                priority=priority,
                retry_policy=retry_policy,
                time_limit_seconds=time_limit_seconds,
                not_before=not_before,
                trigger_rule=trigger_rule,
            )
        )

    # ---- results and artifacts (issue 13) ----

    @cached_property
    def parents(self) -> Mapping[str, Any]:
        """Each parent's result by its key in the run (None for a parent that returned none),
        read once, on first use; empty for a job outside a run, or a run's root."""
        return MappingProxyType(dict(self._parents()))

    def attach(self, name: str, data: Data, *, content_type: str | None = None) -> Artifact:
        """Keep ``data`` (bytes, a ``pathlib.Path``, or a binary stream, read once in chunks)
        as the job's artifact ``name``, replacing one of the same name; the content type is
        guessed from the name when not given. Raises ``AttachRefused`` once this attempt has
        lost its lease, ``ArtifactTooLarge`` past ``JOBENGINE_ARTIFACT_MAX_BYTES``."""
        if self._attach is None:
            raise RuntimeError("this context was made without artifact storage")
        return self._attach(name, data, content_type)
