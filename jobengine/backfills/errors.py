"""Refusals of backfill requests; each names the field at fault and how to fix it."""

from __future__ import annotations

from jobengine.errors import JobEngineError, ValidationError


class BackfillInvalid(ValidationError):
    """A range, cadence or pacing the engine cannot turn into slots; nothing was written."""

    code = "BACKFILL_INVALID"


class TooManySlots(ValidationError):
    code = "BACKFILL_TOO_MANY_SLOTS"

    def __init__(self, maximum: int) -> None:
        super().__init__(
            f"the range holds more than {maximum:,} slots, the most one backfill may create",
            hint="Split the range (end of one = start of the next) into backfills of at most"
            f" {maximum:,} slots each; slots already created are never created twice.",
        )


class CadenceMismatch(ValidationError):
    """A source is one series of slots: every backfill of it uses the source's cadence."""

    code = "BACKFILL_CADENCE_MISMATCH"


class BackfillNotFound(JobEngineError):
    code = "BACKFILL_NOT_FOUND"
    hint = "List backfills with `jobengine backfills list` (or GET /api/v1/backfills)."
