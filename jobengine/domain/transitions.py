"""The transition table: the only place in the engine where transitions exist.

Everything else (the guard's SQL, the docs' state diagram, the tests) reads this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobengine.domain.status import JobStatus

P, S, CL, R = JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.CLAIMED, JobStatus.RUNNING
DONE, F, X = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED


@dataclass(frozen=True, slots=True)
class Transition:
    source: JobStatus
    target: JobStatus
    when: str


TRANSITIONS: tuple[Transition, ...] = (
    Transition(P, S, "dependencies done, not_before reached, admitted by rate limit and quota"),
    Transition(S, CL, "a worker wins the lease (owner, fencing token, expiry)"),
    Transition(CL, R, "the handler starts"),
    Transition(R, DONE, "the handler returned"),
    Transition(R, F, "the handler raised, timed out, or its lease expired"),
    Transition(F, S, "the retry policy grants another attempt, or a dead letter is replayed"),
    Transition(CL, S, "the lease expired before the handler started"),
    Transition(R, S, "started with its chunk, handed back before its handler ran"),
    Transition(P, X, "a user or an upstream failure cancelled it"),
    Transition(S, X, "a user or an upstream failure cancelled it"),
    Transition(CL, X, "a user or an upstream failure cancelled it"),
    Transition(R, X, "a user or an upstream failure cancelled it"),
    Transition(X, P, "an upstream job it was cancelled for was replayed"),
)

_ALLOWED: frozenset[tuple[JobStatus, JobStatus]] = frozenset(
    (t.source, t.target) for t in TRANSITIONS
)

BIRTH_STATES: tuple[JobStatus, ...] = (P, S)
"""A job is born ``scheduled`` when nothing holds it, ``pending`` when something does (a start
time, its parents in a run); its history starts with one row from nothing to that state. The
only way back to ``pending`` later is a run's child brought back by the replay of the parent
it was cancelled for (``cancelled → pending``)."""


def is_allowed(source: JobStatus, target: JobStatus) -> bool:
    return (source, target) in _ALLOWED


def allowed_sources(target: JobStatus) -> tuple[JobStatus, ...]:
    """States a job may be in for a move to ``target``, in declaration order."""
    return tuple(t.source for t in TRANSITIONS if t.target == target)


def allowed_targets(source: JobStatus) -> tuple[JobStatus, ...]:
    return tuple(t.target for t in TRANSITIONS if t.source == source)
