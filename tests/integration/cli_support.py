"""Helpers for the CLI tests: invoking the app in-process and making dead letters."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, text
from typer.testing import CliRunner

from jobengine import guard
from jobengine.cli import app
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.execution import Executor, describe_error
from jobengine.failures import NonRetryableError
from jobengine.store.database import transaction

runner = CliRunner()


def invoke(
    db_url: str, broker_url: str, *args: str, input: str | None = None
) -> tuple[int, str, str]:
    env = {"JOBENGINE_DATABASE_URL": db_url, "JOBENGINE_BROKER_URL": broker_url}
    result = runner.invoke(app, list(args), env=env, input=input)
    return result.exit_code, result.stdout, result.stderr


def one_line_error(code: int, out: str, err: str) -> str:
    assert code == 1, (out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def dead_letter(
    engine: Engine,
    *,
    job_type: str = "noop",
    tenant: str = "t1",
    queue: str = "default",
    exc: Exception | None = None,
) -> tuple[int, int]:
    """A job that failed for good at its first attempt: (dead letter id, job id)."""
    with transaction(engine) as conn:
        job = guard.create_job(
            conn,
            NewJob(type=job_type, payload={"n": 1}, tenant_id=tenant, queue=queue),
            schedule=True,
        )
    assert job is not None
    executor = Executor(engine, lease_ttl_seconds=30)
    claim = executor.claim(job.id, "worker-1")
    assert claim is not None
    try:
        raise exc or NonRetryableError("bad input")
    except Exception as raised:
        failed = executor.record_outcome_of_failure(claim, raised, describe_error(raised))
    assert failed is not None and failed.status is JobStatus.FAILED
    with transaction(engine) as conn:
        entry_id = conn.execute(
            text("SELECT id FROM dead_letters WHERE job_id = :id"), {"id": job.id}
        ).scalar_one()
    return int(entry_id), job.id


def statuses(engine: Engine, table: str, ids: list[int]) -> list[str]:
    with transaction(engine) as conn:
        rows = conn.execute(
            text(f"SELECT status FROM {table} WHERE id = ANY(:ids) ORDER BY id"), {"ids": ids}
        ).scalars()
        return [str(s) for s in rows]


def parse(code: int, out: str, err: str) -> Any:
    assert code == 0, err
    return json.loads(out)
