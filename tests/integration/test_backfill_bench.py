"""``bench/backfill.py`` still runs end to end on tiny sizes and ends with its JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_backfill_benchmark_runs_and_prints_its_json_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    tiny = ["--slots", "1500", "--idle-seconds", "1", "--interval", "0.5"]
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "backfill.py"), *tiny],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "backfill" and figures["slots"] == 1500
    assert figures["ticks"] >= 2, "1,500 slots take two batches at least"
    assert figures["slots_per_s"] > 0 and figures["probes_backfilling"] > 0
