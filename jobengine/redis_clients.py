"""The engine's own Redis clients, made from the broker's URL the way Celery reads it.

Celery reaches the broker through kombu, which follows a Sentinel-managed master by itself
(``sentinel://h1:26379;sentinel://h2:26379`` with ``master_name`` among the transport
options, ``config/celery.py``). The engine's other clients (the leader's broker epoch, the
API's readiness check) must reach the same server, so they are made here from the same two
settings: for a ``sentinel://`` URL the client asks the sentinels which server is the master
each time it opens a connection, and drops a connection to a server that was demoted, so after
a failover its next command reaches the promoted replica.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import structlog
from redis.sentinel import Sentinel

log = structlog.get_logger("jobengine.redis_clients")

SENTINEL_SCHEME = "sentinel://"
SENTINEL_PORT = 26379


def is_sentinel(broker_url: str) -> bool:
    return broker_url.startswith(SENTINEL_SCHEME)


def sentinels_of(broker_url: str) -> list[tuple[str, int]]:
    """The sentinels a ``sentinel://a:26379;sentinel://b:26379`` URL lists, in order."""
    found: list[tuple[str, int]] = []
    for part in broker_url.split(";"):
        parts = urlsplit(part.strip())
        if parts.scheme == "sentinel" and parts.hostname:
            found.append((parts.hostname, parts.port or SENTINEL_PORT))
    return found


def broker_client(broker_url: str, *, sentinel_master: str | None, timeout: float) -> redis.Redis:
    """A client of the broker's own database (``redis://``, ``redis+socket://`` or, with the
    master's name, ``sentinel://``); ``timeout`` bounds every connect and every command.

    With Sentinel the database number and the password are the first sentinel URL's, as kombu
    takes them; they are the master's, while the sentinels are asked without a password.
    """
    if is_sentinel(broker_url):
        if not sentinel_master:
            raise ValueError("a sentinel:// broker URL needs the master's name")
        first = urlsplit(broker_url.split(";")[0].strip())
        db = int(first.path.strip("/") or 0)
        password = unquote(first.password) if first.password else None
        username = unquote(first.username) if first.username else None
        sentinel = Sentinel(
            sentinels_of(broker_url), socket_timeout=timeout, socket_connect_timeout=timeout
        )
        client: redis.Redis = sentinel.master_for(
            sentinel_master, db=db, password=password, username=username
        )
        return client
    url = broker_url
    if url.startswith("redis+socket://"):
        url = "unix://" + url[len("redis+socket://") :]
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def _address(server: tuple[Any, Any]) -> tuple[str, int]:
    """A (host, port) as Sentinel answers it, in the form the sentinels' own list has."""
    host, port = server
    return str(host), int(port)


def sentinel_servers(broker_url: str, master: str, timeout: float = 3.0) -> set[tuple[str, int]]:
    """The sentinels, and the master and replicas they name for ``master`` now: every server
    a failover may move the broker to. Only the sentinels when none answers."""
    found = set(sentinels_of(broker_url))
    sentinel = Sentinel(sorted(found), socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        found.add(_address(sentinel.discover_master(master)))
        found.update(_address(server) for server in sentinel.discover_slaves(master))
    except redis.RedisError as exc:
        log.warning("sentinels_unanswered", master=master, error=str(exc))
    return found
