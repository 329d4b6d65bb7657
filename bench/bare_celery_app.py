"""Bare Celery for comparison: the same broker settings and a no-op task, no Postgres at all."""

from __future__ import annotations

import os

from celery import Celery

from config.celery import celery_config
from config.settings import Settings

app = Celery("bare")
app.config_from_object(celery_config(Settings(), os.environ["BENCH_BROKER_URL"]))


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop() -> None:
    return None
