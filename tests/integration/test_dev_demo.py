"""``make dev`` across runs: one admin key (kept, reused, the others revoked), one Flower
login, a "fails once" job that fails once on every run, and a status line fit for a file."""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import Engine

from jobengine import guard
from jobengine.api.keys import ApiKeyStore
from jobengine.dev import demo_markers, fails_once_command, piped_status, status_line
from jobengine.dev_secrets import (
    DEV_KEY_FILE,
    DEV_KEY_NAME,
    FLOWER_FILE,
    dev_admin_key,
    flower_credentials,
)
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.store.database import transaction

JOBENGINE = Path(sys.executable).with_name("jobengine")


def valid_dev_keys(engine: Engine) -> list[str]:
    with transaction(engine) as conn:
        keys = ApiKeyStore(conn).list()
    return [k.prefix for k in keys if k.name == DEV_KEY_NAME and k.revoked_at is None]


def test_the_dev_admin_key_is_reused_across_runs_and_a_lost_one_is_replaced_and_revoked(
    engine: Engine, tmp_path: Path
) -> None:
    first = dev_admin_key(engine, tmp_path, "demo")
    assert dev_admin_key(engine, tmp_path, "demo") == first
    assert len(valid_dev_keys(engine)) == 1
    assert stat.S_IMODE((tmp_path / DEV_KEY_FILE).stat().st_mode) == 0o600

    (tmp_path / DEV_KEY_FILE).unlink()  # a data folder wiped of the file, not of the database
    second = dev_admin_key(engine, tmp_path, "demo")
    assert second != first
    with transaction(engine) as conn:
        keys = ApiKeyStore(conn)
        assert keys.authenticate(first) is None, "the lost key no longer works"
        assert keys.authenticate(second) is not None
    assert len(valid_dev_keys(engine)) == 1

    with transaction(engine) as conn:
        ApiKeyStore(conn).revoke(second.split("_")[1])
    third = dev_admin_key(engine, tmp_path, "demo")
    assert third not in (first, second) and len(valid_dev_keys(engine)) == 1


def test_flower_credentials_are_generated_once_and_readable_only_by_their_owner(
    tmp_path: Path,
) -> None:
    login = flower_credentials(tmp_path)
    user, password = login.split(":", 1)
    assert user == "dev" and len(password) >= 20
    assert flower_credentials(tmp_path) == login
    assert stat.S_IMODE((tmp_path / FLOWER_FILE).stat().st_mode) == 0o600
    assert flower_credentials(tmp_path / "other") != login


def _sh(command: str) -> int:
    return subprocess.run(["/bin/sh", "-c", command], capture_output=True).returncode


def test_the_fails_once_job_fails_once_on_every_run_not_only_the_first(tmp_path: Path) -> None:
    for _run in range(3):
        markers = demo_markers(tmp_path)
        command = fails_once_command(markers, 1)
        assert [_sh(command), _sh(command)] == [1, 0]
    assert len(list((tmp_path / "demo-markers").iterdir())) == 1, "old runs' markers removed"


def test_the_status_line_is_one_plain_line_naming_every_state(engine: Engine) -> None:
    with transaction(engine) as conn:
        guard.create_job(conn, NewJob(type="noop"), schedule=True)
    line = status_line(engine, 3, datetime(2026, 12, 1, 17, 0, tzinfo=UTC))
    assert line.startswith("2026-12-01T17:00:00Z demo rounds 3 | jobs: ")
    assert "scheduled 1" in line and "dead letters open: 0" in line
    assert all(f"{s.value} " in line for s in JobStatus)
    assert "\n" not in line and "\x1b" not in line


class Ticks:
    """A clock that moves half a second per sleep, and Ctrl-C after ``limit`` sleeps."""

    def __init__(self, limit: int) -> None:
        self.now, self.left = 0.0, limit

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt
        self.now += seconds


def test_piped_output_gets_a_plain_status_line_every_five_seconds(
    engine: Engine, tmp_path: Path
) -> None:
    out = io.StringIO()
    console = Console(file=out)  # not a terminal, as when piped to a file
    ticks = Ticks(limit=24)  # 12 s
    with pytest.raises(KeyboardInterrupt):
        piped_status(
            engine,
            NoBroker(),
            console,
            demo_markers(tmp_path),
            "http://127.0.0.1:5555/",
            commands=False,
            clock=ticks.clock,
            sleep=ticks.sleep,
        )
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("not a terminal: a status line every 5s")
    status = [line for line in lines[1:] if " demo rounds " in line]
    assert [line.split(" demo rounds ")[1].split(" ")[0] for line in status] == ["1", "2", "3"]
    assert len(status) == len(lines) - 1 and "\x1b" not in out.getvalue()
    assert "scheduled 4" in status[-1], "rounds 2 and 3 submitted their jobs"


class NoBroker:
    def publish(self, ref: object, countdown: float | None = None) -> None:
        raise ConnectionError("no broker in this test")

    def publish_chunk(self, refs: object) -> None:
        raise ConnectionError("no broker in this test")


def _dev_once(tmp_path: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env.update(JOBENGINE_DATA_DIR=str(tmp_path / "data"), COLUMNS="120")
    done = subprocess.run(
        [str(JOBENGINE), "dev", "--once"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _printed(pattern: str, out: str) -> str:
    found = re.search(pattern, out)
    assert found is not None, out
    return found.group(1)


@pytest.mark.timeout(480)
def test_a_second_dev_run_reuses_the_key_and_login_and_its_flaky_job_fails_once_again(
    tmp_path: Path,
) -> None:
    runs = [_dev_once(tmp_path), _dev_once(tmp_path)]
    keys = [_printed(r"API key \(admin, tenant demo\): (\S+)", out) for out in runs]
    logins = [_printed(r"\(user dev, password (\S+);", out) for out in runs]
    assert keys[0] == keys[1] and logins[0] == logins[1]
    for out in runs:
        shell_timelines = out.split("(shell): completed")[1].split("job ")[0]
        assert re.search(r"failed\s+scheduled\s+1", shell_timelines), out
