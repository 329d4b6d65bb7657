"""A fleet across hosts: one network namespace per host, joined by a bridge, all made by the test.

Hosts (``HOSTS``): ``db`` runs Postgres and Redis, listening on its address only; ``api``
runs the API; ``w1`` and ``w2`` each run a Celery worker; ``reaper`` (and ``reaper2``, for a
second reaper) runs the leader;
``client`` runs a relay that carries the test's HTTP requests to the API over the links (the
test in the root namespace speaks to the relay's unix socket). Each host's veth pair has its
host end (``eth0``, addressed 10.201.N.<host>/24) in the host's namespace and its other end
in a switch namespace, where a bridge joins them: every address is inside a namespace of the
test's own, and nothing in the root namespace is addressed. Every far process dials Postgres
and Redis by TCP over the links; only the test's observer uses their unix sockets.

Each host's processes also get a UTS namespace with the host's own name, so the names the
engine signs history with (``hostname:pid``) and Celery's ``-n name@%h`` differ per host,
as on real machines.

Faults: ``cut(host)`` takes the host's port on the bridge down (its packets vanish, nothing
answers: a failed link); ``sever(a, b)`` drops what ``a`` sends to ``b`` (a blackhole route
in ``a``), cutting one pair of hosts while both stay on the network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.chaos.harness import ChaosFleet
from tests.chaos.host_handlers import RELEASE_ENV
from tests.chaos.netns import _ip as ip
from tests.fleet.conftest import wait_until

HOSTS = {"db": 1, "api": 2, "reaper": 3, "reaper2": 4, "w1": 11, "w2": 12, "client": 20}
"""Each host and the last byte of its address."""
API_PORT = 8080
REDIS_PORT = 6379
"""Fixed ports: every host has its own port space, so nothing else can hold them."""
TENANT = "hosts"


@dataclass(frozen=True)
class HostNetwork:
    tag: str
    """Short and unique per test run: the namespaces are named from it."""
    subnet: int
    """N in 10.201.N.0/24."""

    @property
    def switch_ns(self) -> str:
        return f"hosts-{self.tag}-switch"

    @property
    def cidr(self) -> str:
        return f"10.201.{self.subnet}.0/24"

    def ns(self, host: str) -> str:
        return f"hosts-{self.tag}-{host}"

    def addr(self, host: str) -> str:
        return f"10.201.{self.subnet}.{HOSTS[host]}"

    @staticmethod
    def hostname(host: str) -> str:
        return f"host-{host}"

    def create(self) -> None:
        """The switch and every host, linked and up; on any failure nothing is left behind."""
        try:
            self._create()
        except BaseException:
            self.delete()
            raise

    def _create(self) -> None:
        ip("netns", "add", self.switch_ns)
        ip("-n", self.switch_ns, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch_ns, "link", "set", "br0", "up")
        for host in HOSTS:
            ns = self.ns(host)
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
            # Made inside the switch with its peer inside the host: no name or address of
            # the pair ever exists in the root namespace.
            ip("-n", self.switch_ns, "link", "add", host, "type", "veth",
               "peer", "name", "eth0", "netns", ns)  # fmt: skip
            ip("-n", self.switch_ns, "link", "set", host, "master", "br0")
            ip("-n", ns, "addr", "add", f"{self.addr(host)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            self.heal(host)

    def cut(self, host: str) -> None:
        ip("-n", self.switch_ns, "link", "set", host, "down")

    def heal(self, host: str) -> None:
        ip("-n", self.switch_ns, "link", "set", host, "up")

    def sever(self, source: str, target: str) -> None:
        """What ``source`` sends to ``target`` vanishes: a TCP connection between them sees
        no answer either way, while both still reach every other host."""
        ip("-n", self.ns(source), "route", "add", "blackhole", f"{self.addr(target)}/32")

    def mend(self, source: str, target: str) -> None:
        ip("-n", self.ns(source), "route", "del", "blackhole", f"{self.addr(target)}/32")

    def run_on(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` as a process of ``host``: in its namespace, under its own hostname."""
        name_then_run = 'hostname "$0" && exec "$@"'
        return ["ip", "netns", "exec", self.ns(host), "unshare", "--uts", "--",
                "sh", "-c", name_then_run, self.hostname(host), *argv]  # fmt: skip

    def delete(self) -> None:
        """Remove every namespace; the veth pairs inside go with them."""
        for ns in [*(self.ns(host) for host in HOSTS), self.switch_ns]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


class ApiOverLinks:
    """The test's HTTP client: requests go to the relay on the client host, which dials the
    API on the api host over the links."""

    def __init__(self, socket_path: Path, key: str) -> None:
        self.http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket_path)),
            base_url="http://api.hosts",
            headers={"Authorization": f"Bearer {key}", "X-Tenant-Id": TENANT},
            timeout=60,
        )

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(path, json=body)

    def answers(self, path: str) -> int | None:
        """The status of ``path``, or None while nothing answers at the far end."""
        try:
            return self.get(path).status_code
        except httpx.TransportError:
            return None


@dataclass
class HostFleet(ChaosFleet):
    """The chaos fleet, each process started on the host ``host_of`` names."""

    net: HostNetwork = field(default_factory=lambda: HostNetwork("", 0))
    host_of: dict[str, str] = field(default_factory=dict)
    release_dir: Path = Path()
    """Where the test releases held jobs (``tests.chaos.host_handlers``)."""

    def env(self, **overrides: str) -> dict[str, str]:
        handlers = json.dumps(["tests.chaos.host_handlers"])
        return super().env(
            JOBENGINE_HANDLER_MODULES=handlers,
            JOBENGINE_LOG_JSON="true",
            **{RELEASE_ENV: str(self.release_dir), **overrides},
        )

    def events(self, name: str, event: str) -> list[dict[str, Any]]:
        """The JSON log lines ``event`` of process ``name``, in order."""
        found = []
        for line in self.log_of(name).splitlines():
            if line.startswith("{") and f'"{event}"' in line:
                entry = json.loads(line)
                if entry.get("event") == event:
                    found.append(entry)
        return found

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        return super().spawn(name, self.net.run_on(self.host_of[name], argv), env)

    def worker_on(self, host: str) -> subprocess.Popen[bytes]:
        self.host_of[host] = host
        return self.worker(host)

    def reaper_on(self, host: str, name: str) -> subprocess.Popen[bytes]:
        self.host_of[name] = host
        return self.start_reaper(name)

    def api_on(self, host: str, key: str) -> ApiOverLinks:
        """The API on ``host`` (``jobengine api``, as the deploy files run it) and the relay on
        the client host; returns once the API answers ``/healthz`` through both."""
        self.host_of["api"], self.host_of["relay"] = host, "client"
        api_env = self.env(JOBENGINE_API_HOST=self.net.addr(host), JOBENGINE_API_PORT=str(API_PORT))
        api = self.spawn("api", [str(Path(sys.executable).with_name("jobengine")), "api"], api_env)
        socket_path = self.logs / "api.sock"
        relay_argv = [sys.executable, "-m", "tests.chaos.relay", str(socket_path),
                      self.net.addr(host), str(API_PORT)]  # fmt: skip
        relay = self.spawn("relay", relay_argv, self.env())
        client = ApiOverLinks(socket_path, key)

        def serving() -> bool:
            assert api.poll() is None, self.log_of("api")
            assert relay.poll() is None, self.log_of("relay")
            return socket_path.exists() and client.answers("/healthz") == 200

        wait_until(serving, 60, f"the API on {host} answering through the relay")
        return client
