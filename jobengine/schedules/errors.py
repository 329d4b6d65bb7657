"""Refusals of schedules: each names the field that was wrong and how to fix it.

A refused schedule writes nothing, so every cadence is parsed before the first statement.
"""

from __future__ import annotations

from jobengine.errors import ValidationError


class InvalidCadence(ValidationError):
    """The cron expression, interval, zone or anchor of a cadence cannot be used."""

    code = "INVALID_CADENCE"

    def __init__(self, field: str, message: str, *, hint: str) -> None:
        super().__init__(f"{field}: {message}", hint=hint)
        self.field = field
