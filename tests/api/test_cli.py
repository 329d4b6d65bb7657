"""``jobengine keys ...`` in-process, and ``jobengine api`` as the real entry point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from jobengine.api.keys import ApiKeyStore
from jobengine.cli import app
from jobengine.embedded import free_loopback_port
from jobengine.store.database import transaction
from tests.fleet.conftest import wait_until

JOBENGINE = Path(sys.executable).with_name("jobengine")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _keep_logging_out_of_the_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("jobengine.cli.configure_logging", lambda *_args, **_kw: None)


def keys(db_url: str, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["keys", *args], env={"JOBENGINE_DATABASE_URL": db_url})
    return result.exit_code, result.stdout, result.stderr


def test_create_list_revoke(db_url: str, engine: Engine) -> None:
    code, out, err = keys(
        db_url, "create", "--tenant", "acme", "--name", "ci", "--scope", "jobs:read",
        "--scope", "jobs:write", "--json",
    )  # fmt: skip
    assert code == 0, err
    created = json.loads(out)
    assert created["scopes"] == ["jobs:read", "jobs:write"] and created["tenantId"] == "acme"
    with transaction(engine) as conn:
        key = ApiKeyStore(conn).authenticate(created["key"])
    assert key is not None and key.prefix == created["prefix"]

    code, out, _ = keys(db_url, "list", "--json")
    assert [k["prefix"] for k in json.loads(out)] == [created["prefix"]]
    assert created["key"] not in out

    code, out, _ = keys(db_url, "revoke", created["prefix"])
    assert code == 0 and "revoked" in out
    with transaction(engine) as conn:
        assert ApiKeyStore(conn).authenticate(created["key"]) is None


def test_errors_are_one_line(db_url: str) -> None:
    code, _, err = keys(db_url, "revoke", "nosuchkey")
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: no API key")
    code, _, err = keys(db_url, "create", "--tenant", "t", "--name", "n", "--scope", "root")
    assert code == 1 and err.startswith("error: unknown or missing scope(s): root")


def test_api_command_serves_health_and_reports_what_is_down(db_url: str, tmp_path: Path) -> None:
    port = free_loopback_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env.update(
        JOBENGINE_DATABASE_URL=db_url,
        JOBENGINE_BROKER_URL=f"redis://127.0.0.1:{free_loopback_port()}/0",
        JOBENGINE_API_PORT=str(port),
        JOBENGINE_DATA_DIR=str(tmp_path),
    )
    proc = subprocess.Popen(
        [str(JOBENGINE), "api"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, 60, "the API answering /healthz")
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["code"] == "NOT_READY" and ready.json()["retryable"] is True
        assert "redis is down" in ready.json()["message"]
        assert "postgres" not in ready.json()["message"]
        assert httpx.get(f"{url}/openapi.json", timeout=10).json()["info"]["title"] == "jobengine"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
