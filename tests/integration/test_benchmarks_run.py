"""Each benchmark still runs end to end on tiny sizes and ends with its JSON line.

Figures are not checked (speed lives in the benchmarks, not in tests): this only keeps the
scripts from rotting when the engine changes under them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

TINY = {
    "transitions.py": ["--transitions", "50", "--warmup", "10", "--rounds", "1", "--clients", "1"],
    "submit.py": ["--jobs", "200", "--batch-size", "100", "--rounds", "1"],
    "throughput.py": ["--jobs", "200"],
    "scale.py": ["--jobs", "50", "--processes", "2"],
    "dag.py": ["--chain", "5", "--fan-out", "50", "--fan-in", "50", "--rounds", "1"],
    "round_trips.py": ["--jobs", "20", "--batch", "10"],
    "tracing_cost.py": ["--jobs", "20", "--spans", "200", "--rounds", "1"],
    "limits.py": [
        "--jobs",
        "200",
        "--single",
        "30",
        "--batch-size",
        "100",
        "--rounds",
        "1",
        "--slices",
        "2",
    ],
    "history_scale.py": [
        *("--history-rows", "3000", "--small-history-rows", "500", "--jobs", "10", "--warmup", "2"),
        *("--rounds", "1", "--scrapes", "2", "--new-events", "20", "--explain"),
    ],
}


@pytest.mark.parametrize("script", sorted(TINY))
def test_benchmark_runs_and_prints_its_json_line(script: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *TINY[script]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["bench"] == script.removesuffix(".py")
    assert any(key.endswith("ratio") for key in figures)
