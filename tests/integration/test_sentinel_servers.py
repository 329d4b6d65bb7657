"""Sealed mode's broker allow-list asks real sentinels for the servers a failover may use."""

from __future__ import annotations

from pathlib import Path

from jobengine.embedded import free_loopback_port
from jobengine.redis_clients import sentinel_servers, sentinels_of
from tests.chaos.replicas import MASTER_NAME, SentinelGroup
from tests.chaos.servers import ChaosRedis


def test_sentinel_servers_names_the_sentinels_the_master_and_its_replica(tmp_path: Path) -> None:
    master = ChaosRedis(tmp_path / "master", port=free_loopback_port())
    master.start()
    group = SentinelGroup(master, tmp_path / "sentinels", count=1)
    try:
        group.start()
        found = sentinel_servers(group.url, MASTER_NAME)
    finally:
        group.stop()
        master.stop()
    assert found == {
        *sentinels_of(group.url),
        ("127.0.0.1", master.port),
        ("127.0.0.1", group.replica.port),
    }
    assert all(isinstance(host, str) and isinstance(port, int) for host, port in found)
