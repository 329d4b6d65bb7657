"""``bench/quotas.py`` still runs end to end on tiny sizes and ends with its JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_quota_benchmark_runs_and_prints_its_json_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    tiny = [
        "--jobs",
        "100",
        "--submissions",
        "20",
        "--small-backlog",
        "50",
        "--large-backlog",
        "100",
    ]
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "quotas.py"), *tiny],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "quotas"
    assert figures["fair_on_window_8_ratio"] > 0 and figures["submit_us_no_quota"] > 0
