"""Bare Celery as a user would start with it: nothing configured but the broker, a no-op task.

So Celery's defaults: early acknowledgement, prefetch multiplier 4, no task events, no result
backend, the ``celery`` queue.
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery("celery_defaults", broker=os.environ["BENCH_BROKER_URL"])


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop() -> None:
    return None
