"""CPU seconds spent by process trees, read from ``/proc``, for the benchmarks' CPU figures.

A worker's pool children and Postgres's backends come and go during a run, so summing only the
processes alive at the second reading would miss the work of those that exited in between.
Linux adds a child's time (its own and its reaped children's) to its parent's ``cutime`` and
``cstime`` when the parent reaps it. Counting all four fields (``utime``, ``stime``, ``cutime``,
``cstime``) of every live process of the tree therefore gives a total that only grows: a process
that exits and is reaped inside the tree moves its time to its parent, it is not lost. Only a
process that outlives its parent and is re-parented outside the tree escapes the count, which
neither Celery's pool nor the postmaster does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int, tid: int | None = None) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` (of its thread ``tid``'s, when given) from the state
    on (field 3), or None if it is gone.

    The command name (field 2) is in parentheses and may itself hold spaces or parentheses,
    hence the split after the last ``)``.
    """
    path = PROC / str(pid) if tid is None else PROC / str(pid) / "task" / str(tid)
    try:
        raw = (path / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _own_and_reaped_ticks(fields: list[str]) -> int:
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return utime + stime + cutime + cstime


def _parents() -> dict[int, int]:
    parents = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parents[int(entry.name)] = int(fields[1])
    return parents


def tree_pids(roots: Iterable[int]) -> set[int]:
    """The live processes descending from ``roots``, the roots included."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    pending = [root for root in roots if root in parents]
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending.extend(children.get(pid, ()))
    return found


def process_cpu_seconds(pid: int) -> float:
    """One process's CPU time, its reaped children's included; 0 if it is gone."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else _own_and_reaped_ticks(fields) / TICKS_PER_SECOND


def tree_cpu_seconds(roots: Iterable[int], exclude: Iterable[int] = ()) -> float:
    """CPU seconds used so far by the trees under ``roots``, less the processes in ``exclude``.

    Take two readings and subtract: the difference is what the trees used in between.
    ``exclude`` keeps a benchmark's own probe (say, the Postgres backend that polls for
    completion) out of the system's figure; it must stay alive across both readings.
    """
    left_out = set(exclude)
    ticks = 0
    for pid in tree_pids(roots) - left_out:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += _own_and_reaped_ticks(fields)
    return ticks / TICKS_PER_SECOND


def _own_ticks(pid: int, tid: int | None = None) -> int:
    """``utime + stime`` of a process (its threads', dead ones included) or of one thread."""
    fields = _stat_fields(pid, tid)
    return 0 if fields is None else int(fields[11]) + int(fields[12])


def prefork_cpu_seconds(root: int) -> dict[str, float]:
    """A prefork Celery worker's CPU so far, by part: ``consumer`` (the main process: kombu's
    fetch and acknowledgement, the hand-over to the pool), ``pool task threads`` (the thread
    each pool process runs its tasks in) and ``pool other threads`` (the rest of the pool
    processes: jobengine's completer and heartbeat). Pool processes must live through both
    readings (no ``max_tasks_per_child``), since a thread's time is not kept after it exits."""
    parents = _parents()
    pool = [pid for pid, parent in parents.items() if parent == root]
    task_threads = sum(_own_ticks(pid, pid) for pid in pool)
    return {
        "consumer": _own_ticks(root) / TICKS_PER_SECOND,
        "pool task threads": task_threads / TICKS_PER_SECOND,
        "pool other threads": (sum(_own_ticks(pid) for pid in pool) - task_threads)
        / TICKS_PER_SECOND,
    }
