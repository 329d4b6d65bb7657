"""A real PgBouncer (Debian's package, ``make pgbouncer``) in front of a test's own Postgres,
on loopback, with what a test does to it: reload, kill, start again.

It runs ``deploy/pgbouncer/pgbouncer.ini`` itself, changed only where a test must: addresses,
paths, trust auth, pool sizes, and the reaper pool's bounds made for the test's leader TTL; plus
one database more, ``unbounded``: the same database without the reaper's bounds. PgBouncer
refuses to run as root, so as root it runs as the ``pgserver`` user Postgres uses.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from jobengine.embedded import SERVICE_USER, free_loopback_port
from jobengine.store.role_connections import reaper_bounds
from tests.fleet.conftest import wait_until

DEPLOY_INI = Path(__file__).resolve().parents[2] / "deploy" / "pgbouncer" / "pgbouncer.ini"
ENGINE_DB = "jobengine"
REAPER_DB = "jobengine_reaper"
UNBOUNDED_DB = "unbounded"


ANSWERED = (psycopg.pq.ExecStatus.TUPLES_OK, psycopg.pq.ExecStatus.COMMAND_OK)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )


def unavailable() -> str | None:
    """Why PgBouncer cannot run here, or None when it can."""
    if pgbouncer_binary() is None:
        return "pgbouncer is not installed: `make pgbouncer` installs Debian's package (as root)"
    return None


def deploy_config() -> configparser.ConfigParser:
    """``deploy/pgbouncer/pgbouncer.ini`` as PgBouncer reads it (names keep their case)."""
    config = configparser.ConfigParser(
        interpolation=None, delimiters=("=",), comment_prefixes=(";",), strict=True
    )
    config.optionxform = str  # type: ignore[assignment,method-assign]
    config.read_string(DEPLOY_INI.read_text())
    return config


def bounds_query(leader_ttl_seconds: float) -> str:
    """The reaper's bounds as the ``connect_query`` of its pool: one SET per setting, in ms."""
    return "; ".join(
        f"SET {name} = {int(seconds * 1000)}"
        for name, seconds in reaper_bounds(leader_ttl_seconds).items()
    )


@dataclass
class PgBouncer:
    data_dir: Path
    upstream_port: int
    leader_ttl_seconds: float
    pool_size: int = 4
    reaper_pool_size: int = 2
    upstream_db: str = "postgres"
    port: int = field(default_factory=free_loopback_port)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def ini(self) -> Path:
        return self.data_dir / "pgbouncer.ini"

    def url(self, database: str = ENGINE_DB) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _write_config(self) -> None:
        config = deploy_config()
        upstream = f"host=127.0.0.1 port={self.upstream_port} dbname={self.upstream_db}"
        databases = config["databases"]
        for name, entry in databases.items():
            entry = re.sub(r"host=\S+ port=\S+ dbname=\S+", upstream, entry)
            if name == REAPER_DB:
                entry = re.sub(r"pool_size=\d+", f"pool_size={self.reaper_pool_size}", entry)
                bounds = bounds_query(self.leader_ttl_seconds)
                entry = re.sub(r"connect_query='[^']*'", f"connect_query='{bounds}'", entry)
            databases[name] = entry
        databases[UNBOUNDED_DB] = f"{upstream} pool_size=1"
        config["pgbouncer"].update(
            listen_addr="127.0.0.1",
            listen_port=str(self.port),
            auth_type="trust",
            auth_file=str(self.data_dir / "userlist.txt"),
            admin_users="postgres",
            default_pool_size=str(self.pool_size),
            logfile=str(self.log_path),
            pidfile=str(self.data_dir / "pgbouncer.pid"),
        )
        with self.ini.open("w") as out:
            config.write(out)
        (self.data_dir / "userlist.txt").write_text('"postgres" ""\n')

    def _own_files(self) -> None:
        """As root, let the service user reach and write this folder."""
        if os.geteuid() != 0:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on import
            from pgserver.utils import ensure_prefix_permissions, ensure_user_exists
        ensure_user_exists(SERVICE_USER)
        ensure_prefix_permissions(self.data_dir)
        for path in (self.data_dir, *self.data_dir.iterdir()):
            shutil.chown(path, SERVICE_USER)

    def start(self) -> None:
        """Start on this object's port (the same one after a kill), and wait until it answers."""
        binary = pgbouncer_binary()
        assert binary is not None, unavailable()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._own_files()
        (self.data_dir / "pgbouncer.pid").unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [binary, str(self.ini)],
            user=SERVICE_USER if os.geteuid() == 0 else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.data_dir / "pgbouncer.stderr").open("ab"),
            start_new_session=True,
        )
        wait_until(self._answers, 15, f"PgBouncer on port {self.port} (log: {self.log_path})")

    @property
    def log_path(self) -> Path:
        return self.data_dir / "pgbouncer.log"

    def _answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log_path.read_text()
        try:
            self.admin("SHOW VERSION")
        except psycopg.OperationalError:
            return False
        return True

    def admin(self, command: str) -> list[dict[str, Any]]:
        """One command on PgBouncer's admin console (simple query protocol only): its rows."""
        with psycopg.connect(
            host="127.0.0.1", port=self.port, dbname="pgbouncer", user="postgres",
            autocommit=True, connect_timeout=3,
        ) as conn:  # fmt: skip
            result = conn.pgconn.exec_(command.encode())
        if result.status not in ANSWERED:
            raise AssertionError(f"{command}: {(result.error_message or b'').decode()}")
        names = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
        return [
            {name: _text(result.get_value(row, i)) for i, name in enumerate(names)}
            for row in range(result.ntuples)
        ]

    def reload(self) -> None:
        self.admin("RELOAD")

    def kill(self) -> None:
        """SIGKILL: every client and server connection it held is cut at once."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        self.kill()
