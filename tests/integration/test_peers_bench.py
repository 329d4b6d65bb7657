"""bench/peers.py still runs end to end at a tiny size, on the systems that need no extra.

Figures are not checked (speed lives in the benchmark): only that every figure the lead reads
is there and comes from a real measurement, and that a wrong choice is refused plainly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PEERS = str(REPO / "bench" / "peers.py")


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    return subprocess.run(
        [sys.executable, PEERS, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_peers_prints_jobs_per_second_cpu_and_ratios_for_jobengine_and_bare_celery(
    tmp_path: Path,
) -> None:
    # /proc counts CPU in ticks of 10 ms, and jobengine's chunks spend about 0.1 ms of worker
    # CPU per job: enough jobs that each side's CPU spans many ticks, so "> 0" is measured.
    done = _run("--jobs", "2000", "--systems", "jobengine-chunks,celery-defaults", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "peers"
    assert figures["postgres"]["fsync"] == "on"
    assert figures["postgres"]["synchronous_commit"] == "on"
    ours, celery = figures["systems"]["jobengine-chunks"], figures["systems"]["celery-defaults"]
    assert ours["jobs_per_s"] > 0 and celery["jobs_per_s"] > 0
    assert ours["worker_cpu_s_per_1k"] > 0 and celery["worker_cpu_s_per_1k"] > 0
    assert ours["postgres_cpu_s_per_1k"] > 0
    assert celery["postgres_cpu_s_per_1k"] is None
    expected = round(ours["jobs_per_s"] / celery["jobs_per_s"], 3)
    assert figures["jobengine_chunks_ratio"] == {"celery-defaults": expected}


def test_an_unknown_system_is_refused_with_the_choices_named(tmp_path: Path) -> None:
    done = _run("--systems", "jobengine-chunks,rq", cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown systems ['rq']" in done.stderr
    assert "pgqueuer" in done.stderr
    assert "Traceback" not in done.stderr
