"""Planning a run: every check that can refuse it, before anything is written.

Pure: it reads only the spec. It refuses an empty run, a blank or duplicate key, a trigger
rule that does not exist, an edge naming a key outside the run, a self-edge, and a cycle
(naming the keys of one), and counts each job's parents, which is what the child waits with
in Postgres.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from jobengine.domain.run import RunSpec, TriggerRule
from jobengine.runs.errors import (
    DuplicateRunKey,
    EmptyRun,
    InvalidRunKey,
    RunCycle,
    SelfEdge,
    UnknownRunKey,
    UnknownTriggerRule,
)

MAX_KEY_CHARS = 200


@dataclass(frozen=True, slots=True)
class Plan:
    keys: tuple[str, ...]
    """The jobs' keys in the spec's order."""
    parents: tuple[int, ...]
    """How many parents each job (by position) waits for; 0 for a root."""
    edges: tuple[tuple[int, int], ...]
    """(parent position, child position), duplicates dropped, in the spec's order."""


def plan(spec: RunSpec) -> Plan:
    """The run's plan, or the first refusal of it."""
    if not spec.jobs:
        raise EmptyRun(spec.name)
    position: dict[str, int] = {}
    for n, job in enumerate(spec.jobs):
        if not isinstance(job.key, str) or not job.key.strip() or len(job.key) > MAX_KEY_CHARS:
            raise InvalidRunKey(job.key)
        if job.key in position:
            raise DuplicateRunKey(job.key)
        if job.trigger_rule not in set(TriggerRule):
            raise UnknownTriggerRule(job.key, job.trigger_rule, [r.value for r in TriggerRule])
        position[job.key] = n
    edges: dict[tuple[int, int], None] = {}
    for parent_key, child_key in spec.edges:
        for key in (parent_key, child_key):
            if key not in position:
                raise UnknownRunKey(parent_key, child_key, key)
        if parent_key == child_key:
            raise SelfEdge(parent_key)
        edges[(position[parent_key], position[child_key])] = None
    keys = tuple(job.key for job in spec.jobs)
    _refuse_cycle(keys, list(edges))
    parents = [0] * len(keys)
    for _, child in edges:
        parents[child] += 1
    return Plan(keys=keys, parents=tuple(parents), edges=tuple(edges))


def _refuse_cycle(keys: tuple[str, ...], edges: list[tuple[int, int]]) -> None:
    """Kahn's order; whatever it cannot order contains a cycle, found by walking back."""
    children: list[list[int]] = [[] for _ in keys]
    waiting = [0] * len(keys)
    for parent, child in edges:
        children[parent].append(child)
        waiting[child] += 1
    ready = deque(n for n, count in enumerate(waiting) if count == 0)
    ordered = 0
    while ready:
        node = ready.popleft()
        ordered += 1
        for child in children[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    if ordered == len(keys):
        return
    # Every node left has a parent that is left too: walk parents until one repeats.
    stuck = {n for n, count in enumerate(waiting) if count > 0}
    parent_of = {child: parent for parent, child in edges if parent in stuck and child in stuck}
    seen: dict[int, int] = {}
    node = min(stuck)
    while node not in seen:
        seen[node] = len(seen)
        node = parent_of[node]
    walk = sorted(seen, key=seen.__getitem__)[seen[node] :]
    cycle = list(reversed(walk))  # parent before child
    first = cycle.index(min(cycle))  # told from the job that comes first in the spec
    raise RunCycle([keys[n] for n in cycle[first:] + cycle[:first]])
