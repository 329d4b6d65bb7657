"""bench/one_per_message.py runs end to end at a tiny size and splits what it measures.

Figures are not checked (speed lives in the benchmark): only that each part the note reads is
there, that the fsync comparison really ran with ``synchronous_commit`` off and the others
with it on, and that the ratios are the ones its rates give.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PARTS = {
    "consumer",
    "pool task threads",
    "pool other threads",
    "postgres",
    "redis",
    "benchmark (producer, poll)",
}


def test_one_per_message_bench_splits_cpu_by_part_and_runs_the_fsync_comparison(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    script = str(REPO / "bench" / "one_per_message.py")
    done = subprocess.run(
        [sys.executable, script, "--jobs", "400", "--rounds", "1", "--claims", "20"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "one_per_message"
    systems = figures["systems"]
    bare = systems["celery-jobengine-settings"]
    ours = systems["jobengine-one-per-message"]
    unsynced = systems["jobengine-one-per-message, synchronous_commit off"]
    assert (bare["synchronous_commit"], ours["synchronous_commit"]) == ("on", "on")
    assert unsynced["synchronous_commit"] == "off"
    for system in systems.values():
        assert set(system["cpu_ms_per_job"]) == PARTS
        assert system["cores_used"] > 0
        assert system["cpu_ms_per_job_total"] == pytest.approx(
            sum(system["cpu_ms_per_job"].values()), abs=0.01
        )
        assert system["cycle_ms"] == pytest.approx(2 * 1000 / system["jobs_per_s"], rel=1e-3)
    assert ours["cpu_ms_per_job"]["postgres"] > 0
    assert ours["cpu_ms_per_job"]["pool task threads"] > 0
    assert figures["ratio_to_bare_celery"]["jobengine-one-per-message"] == round(
        ours["jobs_per_s"] / bare["jobs_per_s"], 3
    )
    for op in ("claim", "complete one"):
        timed = figures["in_process"][op]
        assert timed["wall_ms"] >= timed["cpu_ms"] > 0
