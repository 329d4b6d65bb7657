"""A worker's liveness probe reads a file its event loop touches: fresh while the loop turns,
stale once the process is frozen, gone after a warm shutdown; Postgres and Redis are not asked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.fleet.conftest import Fleet, wait_until

JOBENGINE = Path(sys.executable).with_name("jobengine")


def probe(path: Path, max_age: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(JOBENGINE),
            "health",
            "worker",
            "--file",
            str(path),
            "--max-age",
            str(max_age),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_alive_file_is_fresh_while_the_loop_turns_stale_when_frozen_gone_after_shutdown(
    fleet: Fleet, tmp_path: Path
) -> None:
    alive = tmp_path / "alive"
    worker = fleet.start_worker(
        "w1", JOBENGINE_WORKER_ALIVE_FILE=str(alive), JOBENGINE_WORKER_HEARTBEAT_SECONDS="0.2"
    )
    wait_until(alive.exists, 30, "the alive file written")
    first = alive.stat().st_mtime_ns
    wait_until(lambda: alive.stat().st_mtime_ns > first, 30, "the alive file touched again")
    fresh = probe(alive, 30)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.startswith("alive:")

    os.kill(worker.pid, signal.SIGSTOP)
    try:
        frozen_at = alive.stat().st_mtime_ns
        wait_until(lambda: probe(alive, 1.0).returncode == 1, 30, "the probe sees a frozen loop")
        assert alive.stat().st_mtime_ns == frozen_at
        assert "last touched" in probe(alive, 1.0).stderr
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    wait_until(lambda: probe(alive, 1.0).returncode == 0, 30, "the loop turns again")

    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    assert not alive.exists()
    gone = probe(alive, 30)
    assert gone.returncode == 1 and "does not exist" in gone.stderr
