"""``jobengine audit export`` and ``jobengine audit verify``: an export written, written again
with ``--like`` to the same bytes, resumed with ``--resume``; verify run in a process that
has no engine settings at all, naming the broken line in one line on stderr."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from jobengine.store.database import transaction
from tests.fleet.conftest import wait_until
from tests.integration.cli_support import invoke, one_line_error, parse
from tests.integration.test_provenance_export import populate

pytestmark = pytest.mark.usefixtures("quiet_cli")

JOBENGINE = Path(sys.executable).with_name("jobengine")


def clean_env() -> dict[str, str]:
    """No JOBENGINE_* variable, no database, no broker: what an auditor's machine has."""
    return {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}


def test_export_writes_a_file_that_exporting_again_like_it_reproduces_byte_for_byte(
    engine: Engine, db_url: str, closed_broker: str, tmp_path: Path
) -> None:
    ids = populate(engine, "acme", 6)
    waiting = ids[2]  # populate leaves every third job scheduled
    code, _, err = invoke(db_url, closed_broker, "jobs", "cancel", str(waiting), "--reason", "x")
    assert code == 0, err
    first = tmp_path / "first.ndjson"
    done = parse(
        *invoke(
            db_url,
            closed_broker,
            "audit",
            "export",
            "--tenant",
            "acme",
            "--out",
            str(first),
            "--json",
        )
    )
    assert done["lines"] == done["appended"] == len(first.read_bytes().splitlines())
    lines = [json.loads(line) for line in first.read_bytes().splitlines()]
    [entry] = [line for line in lines if line["kind"] == "audit"]  # filed by the cancel itself
    assert (entry["action"], entry["objectId"], entry["surface"]) == (
        "job.cancel",
        str(waiting),
        "cli",
    )
    assert entry["actor"].startswith("cli:")
    populate(engine, "acme", 4)  # after the bound
    again = tmp_path / "again.ndjson"
    code, _, err = invoke(
        db_url, closed_broker, "audit", "export", "--like", str(first), "--out", str(again)
    )
    assert code == 0, err
    assert again.read_bytes() == first.read_bytes()
    bound = tmp_path / "bound.ndjson"
    code, _, err = invoke(
        db_url, closed_broker, "audit", "export", "--tenant", "acme",
        "--as-of", done["asOf"], "--out", str(bound),
    )  # fmt: skip
    assert code == 0, err
    assert bound.read_bytes() == first.read_bytes()


def test_export_refuses_to_overwrite_a_file_and_resume_finishes_an_interrupted_one(
    engine: Engine, db_url: str, closed_broker: str, tmp_path: Path
) -> None:
    populate(engine, "acme", 6)
    whole = tmp_path / "whole.ndjson"
    invoke(db_url, closed_broker, "audit", "export", "--tenant", "acme", "--out", str(whole))
    line = one_line_error(
        *invoke(db_url, closed_broker, "audit", "export", "--tenant", "acme", "--out", str(whole))
    )
    assert "already exists" in line and "--resume" in line

    cut = tmp_path / "cut.ndjson"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    code, _, err = invoke(db_url, closed_broker, "audit", "export", "--resume", str(cut))
    assert code == 0, err
    assert cut.read_bytes() == data


def test_verify_runs_with_no_engine_settings_and_names_the_broken_line(
    engine: Engine, db_url: str, closed_broker: str, tmp_path: Path
) -> None:
    populate(engine, "acme", 3)
    path = tmp_path / "e.ndjson"
    invoke(db_url, closed_broker, "audit", "export", "--tenant", "acme", "--out", str(path))

    ok = subprocess.run(
        [str(JOBENGINE), "audit", "verify", str(path)],
        env=clean_env(), capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "intact" in ok.stdout

    lines = path.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"actor":"', b'"actor":"X', 1)
    path.write_bytes(b"".join(lines))
    broken = subprocess.run(
        [str(JOBENGINE), "audit", "verify", str(path)],
        env=clean_env(), capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert broken.returncode == 1
    assert "Traceback" not in broken.stderr
    assert broken.stderr.strip().startswith("error: line 4: its bytes hash to ")


def test_an_export_killed_mid_write_resumes_to_the_bytes_of_an_uninterrupted_one(
    engine: Engine, db_url: str, closed_broker: str, tmp_path: Path
) -> None:
    with transaction(engine) as conn:  # enough lines that the kill lands mid-export
        conn.execute(
            text(
                "INSERT INTO jobs (tenant_id, project_id, type, payload, status) "
                "SELECT 'acme', 'p', 'noop', jsonb_build_object('i', g), 'scheduled' "
                "FROM generate_series(1, 5000) AS g"
            )
        )
        conn.execute(
            text(
                "INSERT INTO job_history (job_id, from_status, to_status, actor, attempt) "
                "SELECT id, NULL, 'scheduled', 'system', 0 FROM jobs"
            )
        )
    killed = tmp_path / "killed.ndjson"
    env = {**clean_env(), "JOBENGINE_DATABASE_URL": db_url, "JOBENGINE_BROKER_URL": closed_broker}
    proc = subprocess.Popen(
        [str(JOBENGINE), "audit", "export", "--tenant", "acme", "--out", str(killed)],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(
            lambda: killed.exists() and killed.stat().st_size > 100_000, 60, "export writing"
        )
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert b'"kind":"manifest"' not in killed.read_bytes()

    code, _, err = invoke(db_url, closed_broker, "audit", "export", "--resume", str(killed))
    assert code == 0, err
    whole = tmp_path / "whole.ndjson"
    code, _, err = invoke(
        db_url, closed_broker, "audit", "export", "--like", str(killed), "--out", str(whole)
    )
    assert code == 0, err
    assert killed.read_bytes() == whole.read_bytes()
