"""RetryPolicy: how many attempts a job gets, how long it waits between them, which errors
deserve another try. Pure and deterministic given a random source, so tests can pin it.

A job's policy is its type's default with the job's own overrides on top; unknown fields are
refused at submission rather than ignored at 3 a.m.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.errors import ValidationError


class Backoff(StrEnum):
    FIXED = "fixed"
    LINEAR = "linear"
    EXPONENTIAL = "exponential"


class Jitter(StrEnum):
    NONE = "none"
    FULL = "full"
    EQUAL = "equal"


POISON = "PoisonMessage"
NEVER_RETRY_DEFAULT: tuple[str, ...] = ("NonRetryableError", "EgressBlocked", POISON)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    retry: bool
    countdown: float
    reason: str
    dead_letter: DeadLetterReason | None = None
    """Why the job is dead-lettered when ``retry`` is false."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 3
    """Retries after the first attempt: a job runs at most ``max_retries + 1`` times."""
    backoff: Backoff = Backoff.EXPONENTIAL
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 300.0
    jitter: Jitter = Jitter.FULL
    retry_on: tuple[str, ...] = ()
    """Error class names that retry; empty means every error not in ``never_retry_on``."""
    never_retry_on: tuple[str, ...] = NEVER_RETRY_DEFAULT

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValidationError("max_retries must be >= 0", hint="Use 0 to never retry.")
        if self.base_delay_seconds < 0 or self.max_delay_seconds < 0:
            raise ValidationError("retry delays must be >= 0", hint="Give delays in seconds.")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetryPolicy:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(
                f"unknown retry policy field(s): {', '.join(unknown)}",
                hint=f"Known fields: {', '.join(sorted(known))}.",
            )
        values = dict(data)
        try:
            if "backoff" in values:
                values["backoff"] = Backoff(values["backoff"])
            if "jitter" in values:
                values["jitter"] = Jitter(values["jitter"])
        except ValueError as exc:
            raise ValidationError(
                f"bad retry policy: {exc}",
                hint="backoff is fixed|linear|exponential; jitter is none|full|equal.",
            ) from None
        for key in ("retry_on", "never_retry_on"):
            if key in values:
                values[key] = tuple(values[key])
        for key in ("max_retries",):
            if key in values and not isinstance(values[key], int):
                raise ValidationError(f"{key} must be an integer", hint="e.g. 3")
        return cls(**values)

    @classmethod
    def resolve(cls, *layers: Mapping[str, Any] | None) -> RetryPolicy:
        """The policy from layered overrides, later layers winning (type default, then job)."""
        merged: dict[str, Any] = {}
        for layer in layers:
            if layer:
                merged.update(layer)
        return cls.from_dict(merged)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["backoff"] = self.backoff.value
        data["jitter"] = self.jitter.value
        data["retry_on"] = list(self.retry_on)
        data["never_retry_on"] = list(self.never_retry_on)
        return data

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the attempt after ``attempt`` (1-based), capped, jittered."""
        n = max(attempt, 1)
        if self.backoff is Backoff.FIXED:
            raw = self.base_delay_seconds
        elif self.backoff is Backoff.LINEAR:
            raw = self.base_delay_seconds * n
        else:
            raw = self.base_delay_seconds * (2.0 ** min(n - 1, 62))
        capped = min(raw, self.max_delay_seconds)
        rand = rng or random
        if self.jitter is Jitter.FULL:
            return rand.uniform(0.0, capped)
        if self.jitter is Jitter.EQUAL:
            return capped / 2 + rand.uniform(0.0, capped / 2)
        return capped

    def is_retryable(self, error_names: Iterable[str]) -> bool:
        names = set(error_names)
        if names & set(self.never_retry_on):
            return False
        return not self.retry_on or bool(names & set(self.retry_on))

    def decide(
        self, attempt: int, error_names: Iterable[str], rng: random.Random | None = None
    ) -> RetryDecision:
        """Whether the job that just failed its ``attempt``-th run gets another, and when."""
        names = list(error_names)
        if POISON in names:
            return RetryDecision(
                False, 0.0, "poison: the job cannot be processed", DeadLetterReason.POISON
            )
        if not self.is_retryable(names):
            return RetryDecision(
                False,
                0.0,
                f"{names[0] if names else 'error'} is not retryable",
                DeadLetterReason.NON_RETRYABLE,
            )
        if attempt > self.max_retries:
            return RetryDecision(
                False,
                0.0,
                f"retries exhausted ({self.max_retries})",
                DeadLetterReason.RETRIES_EXHAUSTED,
            )
        return RetryDecision(
            True, self.delay(attempt, rng), f"retry {attempt} of {self.max_retries}"
        )


def error_names(exc: BaseException) -> list[str]:
    """Names an error matches by: each class of its MRO, bare and module-qualified."""
    names: list[str] = []
    for cls in type(exc).__mro__:
        if cls in (BaseException, Exception, object):
            continue
        names.append(cls.__name__)
        names.append(f"{cls.__module__}.{cls.__qualname__}")
    return names
