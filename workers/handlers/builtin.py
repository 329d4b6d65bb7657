"""The built-in job types: enough to test a fleet and to run real commands."""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

from jobengine.context import JobContext
from jobengine.failures import CommandFailed, NonRetryableError
from workers.registry import job

OUTPUT_LIMIT = 64 * 1024
POLL_SECONDS = 0.1


@job("noop")
def noop(ctx: JobContext) -> dict[str, Any]:
    """Does nothing; for tests and benchmarks."""
    return {"ok": True}


@job("sleep")
def sleep(ctx: JobContext) -> dict[str, Any]:
    """Waits payload['seconds'], stopping early when cancelled."""
    seconds = float(ctx.payload.get("seconds", 1.0))
    deadline = time.monotonic() + seconds
    idle = threading.Event()
    while (left := deadline - time.monotonic()) > 0:
        ctx.raise_if_cancelled()
        idle.wait(min(left, POLL_SECONDS))
    return {"slept": seconds}


def _tail(data: bytes) -> str:
    return data[-OUTPUT_LIMIT:].decode("utf-8", errors="replace")


@job("shell")
def shell(ctx: JobContext) -> dict[str, Any]:
    """Runs payload['command'] (a list of arguments, or a string for /bin/sh -c).

    Exit 0 completes the job with the exit code and the last 64 KiB of stdout and stderr;
    any other exit fails it with the same details kept in its error.
    """
    command = ctx.payload.get("command")
    if isinstance(command, str):
        argv = ["/bin/sh", "-c", command]
    elif isinstance(command, list) and command and all(isinstance(a, str) for a in command):
        argv = command
    else:
        raise NonRetryableError(
            "payload['command'] must be a string or a non-empty list of strings"
        )
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stopper = threading.Thread(target=_stop_when_cancelled, args=(ctx, proc), daemon=True)
    stopper.start()
    stdout, stderr = proc.communicate()
    ctx.raise_if_cancelled()
    outcome = {"exit_code": proc.returncode, "stdout": _tail(stdout), "stderr": _tail(stderr)}
    if proc.returncode != 0:
        raise CommandFailed(f"command exited with {proc.returncode}", details=outcome)
    return outcome


def _stop_when_cancelled(ctx: JobContext, proc: subprocess.Popen[bytes]) -> None:
    idle = threading.Event()
    while proc.poll() is None:
        if ctx.cancelled:
            proc.kill()
            return
        idle.wait(POLL_SECONDS)


@job("fake_inference")
def fake_inference(ctx: JobContext) -> dict[str, Any]:
    """Steps through a pretend model run, reporting progress after each step."""
    steps = int(ctx.payload.get("steps", 5))
    step_seconds = float(ctx.payload.get("step_seconds", 0.05))
    idle = threading.Event()
    for step in range(1, steps + 1):
        ctx.raise_if_cancelled()
        idle.wait(step_seconds)
        ctx.report_progress(step / steps, f"step {step}/{steps}")
    return {"steps": steps, "output": f"fake output for {ctx.payload.get('prompt', '')!s}"[:200]}
