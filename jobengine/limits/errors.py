"""Refusals of the rate limits' surfaces, in the engine's error tree."""

from __future__ import annotations

from jobengine.errors import JobEngineError, ValidationError


class RateLimitInvalid(ValidationError):
    """A limit definition that cannot describe a token bucket."""

    code = "RATE_LIMIT_INVALID"


class RateLimitUnitsInvalid(ValidationError):
    """A job whose payload does not say how many units it costs, where its limit reads them."""

    code = "RATE_LIMIT_UNITS_INVALID"


class RateLimitNotFound(JobEngineError):
    code = "RATE_LIMIT_NOT_FOUND"
    hint = "List the limits with `jobengine limits list` (or GET /api/v1/limits)."

    def __init__(self, name: str) -> None:
        super().__init__(f"rate limit {name!r} does not exist")
        self.name = name
