"""A network partition the test owns: two namespaces it creates, joined by one veth pair.

Postgres runs in one namespace and listens on its end of the pair (10.200.N.1); the processes
to be cut off run in the other (10.200.N.2). Nothing else is addressed: the rest of the fleet
and the test reach Postgres and Redis through their unix sockets, which no namespace hides.
The partition takes Postgres's end down, so packets from the far side vanish without an
answer, as on a real network that failed; healing brings it back up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass


def unavailable() -> str | None:
    """Why this machine cannot host the partition, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "`ip` is missing: install iproute2 (apt-get install -y iproute2) to run it"
    probe = f"chaosprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"


@dataclass(frozen=True)
class Partition:
    tag: str
    """Short and unique per test: namespace and interface names are built from it."""
    subnet: int
    """N in 10.200.N.0/24."""

    @property
    def pg_ns(self) -> str:
        return f"chaos-{self.tag}-pg"

    @property
    def far_ns(self) -> str:
        return f"chaos-{self.tag}-far"

    @property
    def pg_addr(self) -> str:
        return f"10.200.{self.subnet}.1"

    @property
    def far_addr(self) -> str:
        return f"10.200.{self.subnet}.2"

    @property
    def _pg_if(self) -> str:
        return f"cp{self.tag}"[:15]

    @property
    def _far_if(self) -> str:
        return f"cf{self.tag}"[:15]

    def create(self) -> None:
        """Both namespaces and the pair, up; on any failure nothing of it is left behind."""
        try:
            self._create()
        except BaseException:
            self.delete()
            raise

    def _create(self) -> None:
        for ns in (self.pg_ns, self.far_ns):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", self._pg_if, "type", "veth", "peer", "name", self._far_if)
        _ip("link", "set", self._pg_if, "netns", self.pg_ns)
        _ip("link", "set", self._far_if, "netns", self.far_ns)
        _ip("-n", self.pg_ns, "addr", "add", f"{self.pg_addr}/24", "dev", self._pg_if)
        _ip("-n", self.far_ns, "addr", "add", f"{self.far_addr}/24", "dev", self._far_if)
        self.heal()
        _ip("-n", self.far_ns, "link", "set", self._far_if, "up")

    def partition(self) -> None:
        _ip("-n", self.pg_ns, "link", "set", self._pg_if, "down")

    def heal(self) -> None:
        _ip("-n", self.pg_ns, "link", "set", self._pg_if, "up")

    def delete(self) -> None:
        """Remove both namespaces (a veth pair inside goes with them) and a pair left outside."""
        subprocess.run(["ip", "link", "del", self._pg_if], capture_output=True, check=False)
        for ns in (self.pg_ns, self.far_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
