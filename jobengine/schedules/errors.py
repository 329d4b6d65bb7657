"""Refusals of schedules: each names the field that was wrong and how to fix it.

A refused schedule writes nothing, so every cadence is parsed before the first statement.
"""

from __future__ import annotations

from jobengine.errors import StoreError, ValidationError


class InvalidSchedule(ValidationError):
    """A field of a schedule cannot be used; ``field`` names it as REST does (camelCase)."""

    code = "INVALID_SCHEDULE"

    def __init__(self, field: str, message: str, *, hint: str) -> None:
        super().__init__(f"{field}: {message}", hint=hint)
        self.field = field


class InvalidCadence(InvalidSchedule):
    """The cron expression, interval, zone or anchor of a cadence cannot be used."""

    code = "INVALID_CADENCE"


class ScheduleNotFound(StoreError):
    code = "SCHEDULE_NOT_FOUND"
    hint = "Check the schedule id; list schedules with `jobengine schedules list`."

    def __init__(self, schedule_id: int) -> None:
        super().__init__(f"schedule {schedule_id} does not exist")
        self.schedule_id = schedule_id


class ScheduleNameTaken(StoreError):
    code = "SCHEDULE_NAME_TAKEN"
    hint = "Pick another name, or change the existing schedule (PATCH /api/v1/schedules/{id})."

    def __init__(self, tenant_id: str, project_id: str, name: str) -> None:
        super().__init__(
            f"tenant {tenant_id!r} already has a schedule named {name!r} in project {project_id!r}"
        )
        self.name = name
