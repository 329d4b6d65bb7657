"""jobengine's worker app with a timer around every claim, for ``bench/scale.py``.

Each pool process appends the seconds of each of its claims (``Executor.claim`` and
``claim_chunk``: the admission's wait, the statement and its retries, as a job sees them) to
``$BENCH_CLAIM_TIMINGS_DIR/<pid>.txt``, one line each, flushed at once so a warm shutdown
loses none. The engine's own code is unchanged; only this benchmark wraps it.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from jobengine.execution import Executor
from workers.app import app

__all__ = ["app"]

_files: dict[int, IO[str]] = {}


def _out() -> IO[str]:
    pid = os.getpid()
    found = _files.get(pid)
    if found is None:
        path = Path(os.environ["BENCH_CLAIM_TIMINGS_DIR"]) / f"{pid}.txt"
        found = _files[pid] = path.open("a", encoding="ascii")
    return found


def _timed(claim: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(claim)
    def timed(self: Executor, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return claim(self, *args, **kwargs)
        finally:
            out = _out()
            out.write(f"{time.perf_counter() - started:.6f}\n")
            out.flush()

    return timed


Executor.claim = _timed(Executor.claim)  # type: ignore[method-assign]
Executor.claim_chunk = _timed(Executor.claim_chunk)  # type: ignore[method-assign]
