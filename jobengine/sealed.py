"""Sealed (air-gap) mode: no connection but to the configured database and broker.

The guard wraps Python's socket layer in every worker process: ``connect``/``connect_ex`` to
anything not on the allowlist, and name lookups of hosts not on it (a DNS query is egress
too), raise ``EgressBlocked`` before a packet is sent. Each refusal is logged as
``egress_blocked``. A handler that tries fails for good (``EgressBlocked`` never retries).

It covers code that uses Python sockets (requests, httpx, urllib, redis-py); a C library
opening its own sockets is outside it, so a true air gap still needs the host's firewall or a
network namespace. Unix-domain sockets are local and allowed. Child processes (``shell`` jobs,
any handler's ``subprocess``) are beyond a Python patch: ``jobengine.sealed_children`` starts
them in a network namespace of their own, or refuses to start them where none can be made.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import structlog

from jobengine import sealed_children
from jobengine.failures import NonRetryableError
from jobengine.redis_clients import is_sentinel, sentinel_servers
from jobengine.store.hosts import hosts_of

log = structlog.get_logger("jobengine.sealed")


class EgressBlocked(NonRetryableError):
    code = "EGRESS_BLOCKED"


Endpoint = tuple[str, int]

_installed: dict[str, Any] = {}
_allowed: set[Endpoint] = set()
_allowed_hosts: set[str] = set()


def endpoint_of(url: str, default_port: int) -> Endpoint | None:
    """Host and port of a service URL; None for a unix-socket URL (always local)."""
    parts = urlsplit(url.replace("+psycopg", ""))
    if not parts.hostname:
        return None
    return (parts.hostname, parts.port or default_port)


def allowed_endpoints(
    database_url: str, broker_url: str, sentinel_master: str | None = None
) -> set[Endpoint]:
    """Every Postgres host the URL lists; the broker, or with Sentinel the sentinels and the
    master and replicas they name now (a server added later needs a restart to be reached)."""
    found = {(host, port) for host, port in hosts_of(database_url) if not host.startswith("/")}
    if is_sentinel(broker_url) and sentinel_master:
        return found | sentinel_servers(broker_url, sentinel_master)
    broker = endpoint_of(broker_url, 6379)
    return found if broker is None else found | {broker}


def _check(address: Any, family: int) -> None:
    if family == getattr(socket, "AF_UNIX", None):
        return
    host, port = str(address[0]), int(address[1])
    if (host, port) in _allowed:
        return
    log.warning("egress_blocked", host=host, port=port)
    raise EgressBlocked(
        f"sealed mode: connection to {host}:{port} blocked",
        details={"host": host, "port": port},
    )


def install(endpoints: Iterable[Endpoint]) -> None:
    """Allow only ``endpoints`` from now on in this process, and contain its child processes
    (probing once whether namespaces can be made); idempotent."""
    sealed_children.install()
    _allowed.clear()
    _allowed.update(endpoints)
    for host, _port in list(_allowed):
        _allowed_hosts.add(host)
        try:
            for info in _installed.get("getaddrinfo", socket.getaddrinfo)(host, None):
                resolved = str(info[4][0])
                _allowed.update((resolved, p) for h, p in list(_allowed) if h == host)
        except OSError:
            continue
    if _installed:
        return
    _installed["connect"] = socket.socket.connect
    _installed["connect_ex"] = socket.socket.connect_ex
    _installed["getaddrinfo"] = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        _check(address, self.family)
        _installed["connect"](self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check(address, self.family)
        result: int = _installed["connect_ex"](self, address)
        return result

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and str(host) not in _allowed_hosts:
            log.warning("egress_blocked", host=str(host), port=port, what="name lookup")
            raise EgressBlocked(
                f"sealed mode: name lookup of {host} blocked", details={"host": str(host)}
            )
        return _installed["getaddrinfo"](host, port, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign, assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign, assignment]
    socket.getaddrinfo = getaddrinfo
