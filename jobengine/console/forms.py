"""Reading the console's query strings and forms into the engine's and REST's types, with
refusals that name the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Form, Query

from jobengine.api.schemas_dlq import BulkReplayIn
from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.errors import ValidationError

Csrf = Annotated[str | None, Form(alias="csrf")]
Many = Annotated[list[str] | None, Query()]


def names(values: list[str] | None) -> list[str]:
    return [v.strip() for v in values or [] if v and v.strip()]


def moment(value: str | None, name: str) -> datetime | None:
    """A time from a form: ISO 8601; one without an offset is read as UTC, as pages show."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"{name} {value[:40]!r} is not a time", hint="Use ISO 8601, e.g. 2026-12-01T16:00."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def enums(cls: type[Any], values: list[str], name: str) -> list[Any]:
    try:
        return [cls(v) for v in values]
    except ValueError:
        known = ", ".join(m.value for m in cls)
        raise ValidationError(
            f"{name} must be one of {known}", hint=f"Pick {name} from the list."
        ) from None


def bulk_body(form: dict[str, str], **extra: Any) -> BulkReplayIn:
    patch_text = form.get("payloadPatch", "").strip()
    patch = None
    if patch_text:
        try:
            patch = json.loads(patch_text)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"payloadPatch is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                hint='Write a JSON object, e.g. {"command": "true"}.',
            ) from None
        if not isinstance(patch, dict):
            raise ValidationError("payloadPatch must be a JSON object", hint='e.g. {"a": 1}')
    return BulkReplayIn(
        type=names(form.get("type", "").split(",")),
        queue=names(form.get("queue", "").split(",")),
        failure_reason=enums(
            DeadLetterReason, names(form.get("failureReason", "").split(",")), "failureReason"
        ),
        error_class=names(form.get("errorClass", "").split(",")),
        reason=form.get("note") or None,
        payload_patch=patch,
        **extra,
    )
