"""Refusals of runs: each names the culprit (a key, an edge, a cycle) and how to fix it.

A refused run writes nothing, so every planning error is raised before the first statement.
"""

from __future__ import annotations

from collections.abc import Sequence

from jobengine.errors import StoreError, ValidationError


class RunNotFound(StoreError):
    code = "RUN_NOT_FOUND"
    hint = "Check the run id; list runs with `jobengine runs list`."

    def __init__(self, run_id: int) -> None:
        super().__init__(f"run {run_id} does not exist")
        self.run_id = run_id


class RunAlreadyFinal(StoreError):
    code = "RUN_ALREADY_FINAL"
    hint = "Only a running run can be cancelled; replay its dead letters to resume a failed one."

    def __init__(self, run_id: int, status: str) -> None:
        super().__init__(f"run {run_id} is already {status}; nothing to cancel")
        self.run_id = run_id
        self.status = status


class EmptyRun(ValidationError):
    code = "EMPTY_RUN"
    hint = "Give the run at least one job."

    def __init__(self, name: str) -> None:
        super().__init__(f"run {name!r} has no jobs")


class DuplicateRunKey(ValidationError):
    code = "DUPLICATE_RUN_KEY"
    hint = "Give every job of a run its own key."

    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} names more than one job of the run")
        self.key = key


class InvalidRunKey(ValidationError):
    code = "INVALID_RUN_KEY"
    hint = "Name every job of a run with a non-empty key of at most 200 characters."

    def __init__(self, key: object) -> None:
        super().__init__(f"{key!r} is not a usable job key")
        self.key = key


class UnknownTriggerRule(ValidationError):
    code = "UNKNOWN_TRIGGER_RULE"

    def __init__(self, key: str, rule: object, valid: Sequence[str]) -> None:
        super().__init__(
            f"job {key!r} asks for trigger rule {rule!r}, which does not exist",
            hint=f"Use one of: {', '.join(valid)}.",
        )
        self.key = key


class UnknownRunKey(ValidationError):
    code = "UNKNOWN_RUN_KEY"
    hint = "An edge may only join two jobs of the same run; add the job or fix the key."

    def __init__(self, parent: str, child: str, unknown: str) -> None:
        super().__init__(
            f"edge {parent!r} -> {child!r} names {unknown!r}, which is not a job of the run"
        )
        self.edge = (parent, child)
        self.key = unknown


class SelfEdge(ValidationError):
    code = "RUN_SELF_EDGE"
    hint = "A job cannot wait for itself; remove the edge."

    def __init__(self, key: str) -> None:
        super().__init__(f"edge {key!r} -> {key!r} makes job {key!r} wait for itself")
        self.key = key


class RunCycle(ValidationError):
    code = "RUN_CYCLE"
    hint = "A run must be acyclic: remove one edge of the cycle."

    def __init__(self, cycle: Sequence[str]) -> None:
        path = " -> ".join([*cycle, cycle[0]])
        super().__init__(f"the run's edges make a cycle: {path}")
        self.cycle = tuple(cycle)


class SpawnRefused(StoreError):
    """A handler asked to add a child to its run and may not (see ``runs.spawn``)."""

    code = "SPAWN_REFUSED"
