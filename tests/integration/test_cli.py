"""The ``jobengine`` command line against real Postgres databases.

Migrations and the transition table are driven in-process (``CliRunner``) for speed; the error
path and ``jobengine dev`` run the installed entry point as a subprocess, because what an
operator sees (stderr, exit code, no traceback, servers stopped) is only real there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobengine.cli import app
from jobengine.domain.transitions import TRANSITIONS
from jobengine.embedded import free_loopback_port
from jobengine.services import head_revision

JOBENGINE = Path(sys.executable).with_name("jobengine")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _keep_logging_out_of_the_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI configures logging once per process, binding whatever ``sys.stderr`` is then.

    Inside ``CliRunner`` that is a capture stream closed after the call, and every later test
    in this process would log into a closed file; the real CLI runs once per process.
    """
    monkeypatch.setattr("jobengine.cli.configure_logging", lambda *_args, **_kw: None)


def _invoke(url: str, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"JOBENGINE_DATABASE_URL": url}, input=input)
    return result.exit_code, result.stdout, result.stderr


def _subprocess_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The caller's environment without any JOBENGINE_* setting that could redirect the run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBENGINE_")}
    env["JOBENGINE_DATA_DIR"] = str(tmp_path / "data")
    env.update(overrides)
    return env


def test_upgrade_then_current_prints_the_head_revision(empty_db_url: str) -> None:
    head = head_revision()
    assert head is not None

    code, out, err = _invoke(empty_db_url, "db", "upgrade")
    assert code == 0, err
    assert f"none -> {head} (head)" in out

    code, out, err = _invoke(empty_db_url, "db", "current")
    assert code == 0, err
    assert out.strip() == f"{head} (head)"


def test_downgrade_with_yes_then_current_shows_none(db_url: str) -> None:
    code, out, err = _invoke(db_url, "db", "downgrade", "--yes")
    assert code == 0, err
    assert out.strip().endswith("-> none")

    code, out, err = _invoke(db_url, "db", "current")
    assert code == 0, err
    assert out.strip() == "none"


def test_downgrade_asks_first_and_a_no_changes_nothing(db_url: str) -> None:
    code, _out, _err = _invoke(db_url, "db", "downgrade", input="n\n")
    assert code == 1

    code, out, err = _invoke(db_url, "db", "current")
    assert code == 0, err
    assert out.strip() == f"{head_revision()} (head)"


def test_an_unknown_revision_is_a_one_line_error(db_url: str) -> None:
    code, out, err = _invoke(db_url, "db", "upgrade", "no-such-revision")
    assert code == 1
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: cannot migrate to 'no-such-revision'")


def test_an_unreachable_database_is_one_line_on_stderr_and_exit_code_1(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_loopback_port()}/postgres"
    env = _subprocess_env(tmp_path, JOBENGINE_DATABASE_URL=url)

    done = subprocess.run(
        [str(JOBENGINE), "db", "current"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: the job store is unreachable")
    assert "JOBENGINE_DATABASE_URL" in lines[0]  # the hint says what to fix


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_loopback_port()}/postgres"
    env = _subprocess_env(tmp_path, JOBENGINE_DATABASE_URL=url)

    done = subprocess.run(
        [str(JOBENGINE), "--debug", "db", "current"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert "StoreUnavailable" in done.stderr
    assert "Traceback" in done.stderr


def test_a_bad_setting_names_the_variable_in_one_line() -> None:
    result = runner.invoke(app, ["states"], env={"JOBENGINE_LEASE_TTL_SECONDS": "soon"})
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: JOBENGINE_LEASE_TTL_SECONDS is invalid")


def test_bad_usage_exits_with_2() -> None:
    result = runner.invoke(app, ["db", "no-such-command"])
    assert result.exit_code == 2


def test_states_lists_every_transition() -> None:
    result = runner.invoke(app, ["states"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    for t in TRANSITIONS:
        row = re.compile(rf"^\W*{t.source.value}\W+{t.target.value}\W")
        assert any(row.match(line) for line in lines), f"{t.source} -> {t.target} missing"


@pytest.mark.timeout(180)
def test_dev_runs_a_fleet_round_and_stops_everything_it_started(tmp_path: Path) -> None:
    env = _subprocess_env(tmp_path, COLUMNS="120")

    done = subprocess.run(
        [str(JOBENGINE), "dev", "--once"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output
    assert "JOBENGINE_DATABASE_URL" in done.stdout  # how to use an existing Postgres
    assert re.search(
        r"Flower: http://127\.0\.0\.1:\d+/ \(user dev, password \S{20,}; kept", done.stdout
    )
    assert re.search(r"\S+Z demo rounds 1 \| jobs: pending \d+, scheduled", done.stdout)
    assert "\x1b[" not in done.stdout, "piped output is plain text"
    assert re.search(r"API: +http://127\.0\.0\.1:\d+/api/v1 \(docs: .*/docs\)", done.stdout)
    assert re.search(r"API key \(admin, tenant demo\): je_[a-z0-9]{8}_\S{32,}", done.stdout)
    for title in (
        "(noop): completed",
        "(fake_inference): completed",
        "(shell): completed",
        "(shell): failed",
        "(noop): cancelled",
    ):
        assert title in done.stdout, title
    assert re.search(r"failed\s+scheduled\s+1", done.stdout)  # a retry, by policy
    data = tmp_path / "data"
    assert (data / "postgres" / "pgdata" / "PG_VERSION").exists()  # where JOBENGINE_DATA_DIR said
    assert not (data / "postgres" / "pgdata" / "postmaster.pid").exists()  # Postgres stopped
    assert not (data / "redis" / "redis.json").exists()  # Redis stopped
    for log in ("worker-1", "worker-2", "reaper", "flower", "api"):
        assert (data / "logs" / f"{log}.log").exists()


def test_jobs_get_stuck_and_cancel_answer_operators(db_url: str) -> None:
    from jobengine import guard
    from jobengine.domain.job import NewJob
    from jobengine.domain.status import JobStatus
    from jobengine.guard import Step
    from jobengine.store.database import make_engine, transaction

    engine = make_engine(db_url)
    with transaction(engine) as conn:
        orphan = guard.create_job(conn, NewJob(type="noop"), schedule=True)
        assert orphan is not None
        guard.transition(
            conn,
            orphan.id,
            [Step(JobStatus.CLAIMED), Step(JobStatus.RUNNING)],
            lease_owner="vanished-worker",
            lease_ttl_seconds=0.001,
        )
        done = guard.create_job(conn, NewJob(type="noop"), schedule=True)
        assert done is not None
        guard.transition(conn, done.id, JobStatus.CANCELLED, reason="test")
    engine.dispose()

    code, out, err = _invoke(db_url, "jobs", "get", str(orphan.id), "--json")
    assert code == 0, err
    assert '"status": "running"' in out and '"tenantId": "default"' in out
    assert "lease" not in out.lower(), "--json prints REST's fields, no lease internals"
    code, out, err = _invoke(db_url, "jobs", "get", str(orphan.id))
    assert code == 0, err
    assert "vanished-worker" in out, "the human view still names the lease's owner"

    code, out, err = _invoke(db_url, "jobs", "stuck", "--json")
    assert code == 0, err
    assert f'"id": {orphan.id}' in out and "missed heartbeat" in out

    code, out, err = _invoke(db_url, "jobs", "cancel", str(done.id))
    assert code == 0, err
    assert "already cancelled" in out

    code, out, err = _invoke(db_url, "jobs", "get", "987654")
    assert code == 1
    assert err.strip().splitlines() == [err.strip()] and "job 987654 does not exist" in err
