"""``jobengine flower``: Celery's Flower on the fleet, its revoke signed by who pressed it.

Flower's revoke reaches the workers as a bare Celery broadcast, which names no sender. Run
through here, Flower first leaves its user (basic-auth login, or OAuth user) and the client's
address for the worker that acts on the revoke (``jobengine.revoke_origins``), so the cancel's
history row and its one audit entry say ``flower:<user>``. Flower has no hook for this: its
revoke route is given a subclass of its own handler before Flower builds its routes.
"""

from __future__ import annotations

import asyncio
import sys
from base64 import b64decode
from binascii import Error as Base64Error
from functools import cache
from typing import Any

import redis
from celery.bin.celery import main as celery_main
from flower import urls
from flower.api.control import TaskRevoke
from tornado import web

from config.settings import get_settings
from jobengine import revoke_origins
from jobengine.audit.origin import Origin
from jobengine.redis_clients import broker_client

REVOKE_ROUTE = r"/api/task/revoke/(.+)"
BROKER_TIMEOUT_SECONDS = 2.0
ANONYMOUS = "anonymous"
"""The user of a Flower run with ``FLOWER_UNAUTHENTICATED_API`` and no login."""


def flower_user(authorization: str, current_user: Any) -> str:
    """The basic-auth login of ``authorization`` (Flower has checked its password already),
    else the OAuth user Flower keeps, else ``anonymous``."""
    scheme, _, credentials = authorization.partition(" ")
    if scheme == "Basic":
        try:
            login = b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
        except (Base64Error, UnicodeDecodeError):
            login = ""
        if login:
            return login
    if isinstance(current_user, str) and current_user:
        return current_user
    return ANONYMOUS


@cache
def _broker(broker_url: str) -> redis.Redis:
    sentinel_master = get_settings().broker_sentinel_master
    return broker_client(
        broker_url, sentinel_master=sentinel_master, timeout=BROKER_TIMEOUT_SECONDS
    )


class AttributedTaskRevoke(TaskRevoke):  # type: ignore[misc]  # Flower is untyped
    """Flower's revoke, after noting who asks; the note is left only once Flower has let the
    request in (``web.authenticated``) and not in read-only mode, where Flower refuses."""

    @web.authenticated
    async def post(self, taskid: str) -> None:
        if not self.application.options.read_only:
            user = flower_user(self.request.headers.get("Authorization", ""), self.current_user)
            origin = Origin(
                actor=f"flower:{user}", surface="flower", client_addr=self.request.remote_ip
            )
            client = _broker(self.capp.conf.broker_url)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, revoke_origins.leave, client, taskid, origin)
        await super().post(taskid)


def install() -> None:
    """Route Flower's revoke to ``AttributedTaskRevoke``; before Flower starts, once."""
    for index, entry in enumerate(urls.handlers):
        if isinstance(entry, tuple) and entry[0] == REVOKE_ROUTE:
            urls.handlers[index] = (REVOKE_ROUTE, AttributedTaskRevoke, *entry[2:])
            return
    raise RuntimeError(f"Flower has no route {REVOKE_ROUTE!r}: its revoke cannot be attributed")


def main() -> None:
    """``celery -A workers.app flower`` with the arguments given, revoke attributed."""
    install()
    sys.argv = ["celery", "-A", "workers.app", "flower", *sys.argv[1:]]
    sys.exit(celery_main())


if __name__ == "__main__":
    main()
