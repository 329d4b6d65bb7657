"""``make dev`` / ``jobengine dev`` hand the whole environment to every process they start.

The env builder is checked as a function of ``os.environ``; one real ``jobengine dev --once``
then shows the workers importing the user's handler module and sealing themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobengine.dev_env import COMMAND_TYPES, FleetConfig, fleet_env

REPO = Path(__file__).resolve().parents[2]
JOBENGINE = Path(sys.executable).with_name("jobengine")
USER_ENV = {
    "JOBENGINE_HANDLER_MODULES": "myapp.jobs",
    "JOBENGINE_SEALED": "1",
    "JOBENGINE_LEASE_TTL_SECONDS": "45",
    "JOBENGINE_DATABASE_URL": "postgresql://elsewhere/db",
    "MYAPP_TOKEN_FILE": "/run/secrets/token",
    "PATH": "/usr/bin:/bin",
}


def env_for(environ: dict[str, str]) -> dict[str, str]:
    return fleet_env(
        environ,
        database_url="postgresql://resolved/db",
        broker_url="redis://127.0.0.1:6399/0",
        data_dir=Path("/srv/jobengine"),
    )


def test_every_child_gets_the_whole_environment_with_the_resolved_servers() -> None:
    env = env_for(USER_ENV)

    assert env["JOBENGINE_HANDLER_MODULES"] == "myapp.jobs"
    assert env["JOBENGINE_SEALED"] == "1"
    assert env["JOBENGINE_LEASE_TTL_SECONDS"] == "45"
    assert env["MYAPP_TOKEN_FILE"] == "/run/secrets/token" and env["PATH"] == "/usr/bin:/bin"
    assert env["JOBENGINE_DATABASE_URL"] == "postgresql://resolved/db"
    assert env["JOBENGINE_BROKER_URL"] == "redis://127.0.0.1:6399/0"
    assert env["JOBENGINE_DATA_DIR"] == "/srv/jobengine"


def test_command_types_are_turned_on_for_the_demo_only_when_the_user_did_not_choose() -> None:
    turned_on = FleetConfig.of(env_for(USER_ENV), USER_ENV)
    chosen_off = {**USER_ENV, COMMAND_TYPES: "false"}
    kept_off = FleetConfig.of(env_for(chosen_off), chosen_off)

    assert env_for(USER_ENV)[COMMAND_TYPES] == "true"
    assert turned_on.commands_enabled and turned_on.commands_turned_on
    assert "on for this demo" in "\n".join(turned_on.lines())
    assert env_for(chosen_off)[COMMAND_TYPES] == "false"
    assert not kept_off.commands_enabled
    assert "leaves out its shell jobs" in "\n".join(kept_off.lines())


def test_the_summary_names_the_handler_modules_and_whether_workers_are_sealed() -> None:
    lines = FleetConfig.of(env_for(USER_ENV), USER_ENV).lines()
    unsealed = {"JOBENGINE_HANDLER_MODULES": '["a.jobs", "b.jobs"]'}
    plain = FleetConfig.of(env_for(unsealed), unsealed).lines()

    assert "workers: handler modules: workers.handlers.builtin, myapp.jobs" in lines
    assert any(line.startswith("workers: sealed: yes") for line in lines)
    assert "workers: handler modules: workers.handlers.builtin, a.jobs, b.jobs" in plain
    assert "workers: sealed: no" in plain


@pytest.mark.timeout(240)
def test_dev_workers_import_the_users_handler_modules_and_seal_themselves(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env.update(
        JOBENGINE_DATA_DIR=str(tmp_path / "data"),
        JOBENGINE_HANDLER_MODULES="tests.fleet.handlers",
        JOBENGINE_SEALED="1",
        PYTHONPATH=str(REPO),
        COLUMNS="120",
    )
    done = subprocess.run(
        [str(JOBENGINE), "dev", "--once"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=230,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "workers: handler modules: workers.handlers.builtin, tests.fleet.handlers" in output
    assert "workers: sealed: yes" in output
    assert "command-running job types (shell): on for this demo" in output
    for worker in ("worker-1", "worker-2"):
        log = (tmp_path / "data" / "logs" / f"{worker}.log").read_text(errors="replace")
        assert "jobs.effect" in log, log  # a task of the user's handler module
        assert "sealed_children_isolated" in log or "sealed_children_refused" in log, log
