"""The one list of audited acts. The README's table and the tests are checked against it:
adding an act here without a test for each of its surfaces fails the suite."""

from __future__ import annotations

from dataclasses import dataclass

from jobengine.errors import ValidationError


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    """Dotted, ``<object>.<verb>``: what the filter ``action`` matches."""
    object_kind: str
    surfaces: tuple[str, ...]
    """Where an operator can do it; each is tested to leave exactly one entry."""
    summary: str


ACTIONS: tuple[Action, ...] = (
    Action("key.create", "key", ("cli",), "an API key was created (never its secret)"),
    Action("key.revoke", "key", ("cli",), "an API key was revoked"),
    Action("queue_limit.set", "queue", ("cli",), "a queue's concurrency limit was set"),
    Action("queue_limit.delete", "queue", ("cli",), "a queue's concurrency limit was removed"),
    Action("limit.set", "rate_limit", ("rest", "cli"), "a rate limit was created or replaced"),
    Action("limit.delete", "rate_limit", ("rest", "cli"), "a rate limit was deleted"),
    Action("quota.set", "tenant", ("rest", "cli"), "a tenant's quota was set"),
    Action("quota.delete", "tenant", ("rest", "cli"), "a tenant's quota was removed"),
    Action("fair_queue.set", "queue", ("rest", "cli"), "a queue was shared fairly"),
    Action("fair_queue.delete", "queue", ("rest", "cli"), "a queue stopped being fair-shared"),
    Action("schedule.create", "schedule", ("rest", "cli"), "a schedule was created"),
    Action("schedule.update", "schedule", ("rest",), "a schedule was changed"),
    Action("schedule.pause", "schedule", ("rest", "cli", "console"), "a schedule was paused"),
    Action("schedule.resume", "schedule", ("rest", "cli", "console"), "a schedule was resumed"),
    Action("schedule.delete", "schedule", ("rest", "cli"), "a schedule was deleted"),
    Action("backfill.create", "backfill", ("rest", "cli"), "a backfill was created"),
    Action("backfill.cancel", "backfill", ("rest", "cli"), "a backfill was cancelled"),
    Action("run.cancel", "run", ("rest", "cli"), "a run was cancelled, with its jobs"),
    Action(
        "job.cancel",
        "job",
        ("rest", "cli", "console", "flower"),
        "a job was cancelled (Flower's revoke included)",
    ),
    Action(
        "dlq.replay",
        "dead_letter",
        ("rest", "cli", "console"),
        "dead letters were replayed: one, or a filter's (one entry naming every job)",
    ),
    Action("dlq.discard", "dead_letter", ("rest", "cli", "console"), "a dead letter was discarded"),
    Action(
        "dlq.purge", "dead_letter", ("rest", "cli"), "replayed and discarded entries were purged"
    ),
)

_BY_NAME = {a.name: a for a in ACTIONS}


class UnknownAuditAction(ValidationError):
    code = "UNKNOWN_AUDIT_ACTION"
    hint = f"Use one of: {', '.join(_BY_NAME)}."


def action(name: str) -> Action:
    """The act named ``name``; a name outside the list is a programming error or a bad filter."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownAuditAction(f"{name!r} is not an audited action") from None
