"""deploy/'s Flower unit runs only with a login: its start check refuses an env file without
FLOWER_BASIC_AUTH, and the example env file carries one to replace."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def start_check() -> list[str]:
    """The unit's ExecStartPre as systemd runs it (``$$`` is systemd's literal ``$``)."""
    unit = (DEPLOY / "systemd" / "jobengine-flower.service").read_text()
    [line] = [ln for ln in unit.splitlines() if ln.startswith("ExecStartPre=")]
    return shlex.split(line.removeprefix("ExecStartPre=").replace("$$", "$"))


def test_the_flower_unit_refuses_to_start_without_a_login_from_the_env_file() -> None:
    for env in ({}, {"FLOWER_BASIC_AUTH": ""}, {"FLOWER_BASIC_AUTH": "ops"}):
        refused = subprocess.run(start_check(), env=env, capture_output=True, text=True)
        assert refused.returncode == 1, env
        assert "set FLOWER_BASIC_AUTH=user:password" in refused.stderr
    allowed = subprocess.run(start_check(), env={"FLOWER_BASIC_AUTH": "ops:pw"})
    assert allowed.returncode == 0


def test_the_example_env_file_names_flowers_login() -> None:
    lines = (DEPLOY / "jobengine.env.example").read_text().splitlines()
    assert "FLOWER_BASIC_AUTH=ops:CHANGE_ME" in lines
