"""The workers registry on real worker processes: a worker announces what it consumes and
handles, a killed one is gone after the TTL, a stopped one drains, then leaves."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from typing import Any

from sqlalchemy import text
from typer.testing import CliRunner

from jobengine import __version__
from jobengine.cli import app as cli_app
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.producer import submit_jobs
from jobengine.store.workers_repository import WorkerView
from jobengine.workers_registry import WorkersRegistry
from tests.fleet import handlers, handlers_a  # noqa: F401  (the producer knows the types)
from tests.fleet.conftest import Fleet, wait_until
from tests.fleet.routing_support import (  # noqa: F401  (an autouse fixture)
    REGISTRY_ENV,
    TTL_SECONDS,
    cli_keeps_logging_alone,
)

BUILTIN = ["fake_inference", "noop", "shell", "sleep"]


def registry(fleet: Fleet) -> WorkersRegistry:
    return WorkersRegistry(fleet.engine, TTL_SECONDS)


def one(fleet: Fleet, name: str, *, include_gone: bool = False) -> WorkerView | None:
    found = [w for w in registry(fleet).workers(include_gone=include_gone) if w.name == name]
    return found[0] if found else None


def workers_cli(fleet: Fleet, *args: str) -> str:
    result = CliRunner().invoke(
        cli_app,
        ["workers", "list", *args],
        env={"JOBENGINE_DATABASE_URL": fleet.db_url, **REGISTRY_ENV},
    )
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_a_worker_appears_with_its_queues_and_types_and_is_gone_a_ttl_after_sigkill(
    fleet: Fleet,
) -> None:
    env = {"JOBENGINE_HANDLER_MODULES": json.dumps(["tests.fleet.handlers_a"]), **REGISTRY_ENV}
    proc = fleet.start_worker("wa", concurrency=2, **env)
    name = f"wa@{socket.gethostname()}"

    worker = wait_until(lambda: one(fleet, name), 30, "worker a announced")
    assert worker.state == "live" and worker.pid == proc.pid
    assert worker.types == sorted([*BUILTIN, "routed_a"])
    assert worker.queues == sorted(["default", *(f"jobs.{t}" for t in worker.types)])
    assert (worker.concurrency, worker.sealed, worker.version) == (2, False, __version__)
    listed: list[dict[str, Any]] = json.loads(workers_cli(fleet, "--json"))
    assert [(w["name"], w["state"], w["types"]) for w in listed] == [(name, "live", worker.types)]

    fleet.kill(proc, signal.SIGKILL)
    killed_at = time.monotonic()
    gone = wait_until(
        lambda: (w := one(fleet, name, include_gone=True)) is not None and w.gone and w,
        30,
        "worker a shown gone",
    )
    # Its last beat was at most one interval before the kill, so gone comes no sooner than that.
    assert time.monotonic() - killed_at >= TTL_SECONDS - 0.3 - 0.1
    assert gone.state == "gone" and one(fleet, name) is None  # not among the live ones
    assert "no live workers" in workers_cli(fleet)
    assert "gone since" in workers_cli(fleet, "--all")


def test_a_worker_stopped_with_sigterm_drains_while_its_job_finishes_then_leaves(
    fleet: Fleet,
) -> None:
    env = {"JOBENGINE_HANDLER_MODULES": json.dumps(["tests.fleet.handlers"]), **REGISTRY_ENV}
    proc = fleet.start_worker("wd", **env)
    name = f"wd@{socket.gethostname()}"
    wait_until(lambda: one(fleet, name), 30, "worker announced")
    [job] = submit_jobs(
        fleet.engine, fleet.publisher(), [NewJob(type="blocking", payload={"block_attempts": [1]})]
    )
    wait_until(lambda: fleet.job(job.id).status is JobStatus.RUNNING, 30, "job running")

    os.kill(proc.pid, signal.SIGTERM)  # the main process only: a warm shutdown
    draining = wait_until(
        lambda: (w := one(fleet, name)) is not None and w.draining and w, 30, "draining"
    )
    assert draining.state == "draining" and not draining.gone
    assert proc.poll() is None  # still finishing its job
    fleet.release(job.id, 1)

    wait_until(lambda: fleet.job(job.id).status is JobStatus.COMPLETED, 30, "job completed")
    assert proc.wait(30) == 0
    assert one(fleet, name, include_gone=True) is None  # it said goodbye: its row is gone
    with fleet.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM workers")).scalar_one() == 0
