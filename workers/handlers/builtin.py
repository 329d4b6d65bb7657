"""The built-in job types: enough to test a fleet and to run real commands."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from typing import Any

from jobengine.context import JobContext
from jobengine.failures import CommandFailed, NonRetryableError
from workers.handlers.output import OutputTail
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


@job("shell")
def shell(ctx: JobContext) -> dict[str, Any]:
    """Runs payload['command'] (a list of arguments, or a string for /bin/sh -c).

    Exit 0 completes the job with the exit code and the last 64 KiB of stdout and stderr, each
    read as it comes (never buffered whole), with how many bytes each stream wrote and how many
    of them were dropped; any other exit fails it with the same details kept in its error. The
    command runs in a session of its own, so cancelling stops everything it started.
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
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    stdout, stderr = OutputTail(OUTPUT_LIMIT), OutputTail(OUTPUT_LIMIT)
    assert proc.stdout is not None and proc.stderr is not None
    readers = [
        threading.Thread(target=tail.drain, args=(stream,), daemon=True)
        for tail, stream in ((stdout, proc.stdout), (stderr, proc.stderr))
    ]
    for reader in readers:
        reader.start()
    stopper = threading.Thread(target=_stop_when_cancelled, args=(ctx, proc), daemon=True)
    stopper.start()
    for reader in readers:
        reader.join()
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    ctx.raise_if_cancelled()
    outcome = {
        "exit_code": proc.returncode,
        "stdout": stdout.text(),
        "stderr": stderr.text(),
        "stdout_bytes": stdout.total,
        "stderr_bytes": stderr.total,
        "stdout_dropped_bytes": stdout.dropped,
        "stderr_dropped_bytes": stderr.dropped,
    }
    if proc.returncode != 0:
        raise CommandFailed(f"command exited with {proc.returncode}", details=outcome)
    return outcome


def _stop_when_cancelled(ctx: JobContext, proc: subprocess.Popen[bytes]) -> None:
    idle = threading.Event()
    while proc.poll() is None:
        if ctx.cancelled:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
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
