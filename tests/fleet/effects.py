"""Recording what a handler did in ``test_effects``, apart from any ``@job``: a handler module
imports it without registering the types of another module in its worker."""

from __future__ import annotations

import os

from sqlalchemy import text

from jobengine.context import JobContext
from jobengine.store.database import process_engine


def record_effect(ctx: JobContext, what: str) -> None:
    with process_engine(os.environ["JOBENGINE_DATABASE_URL"]).begin() as conn:
        conn.execute(
            text("INSERT INTO test_effects (job_id, attempt, what, pid) VALUES (:j, :a, :w, :p)"),
            {"j": ctx.job_id, "a": ctx.attempt, "w": what, "p": os.getpid()},
        )
