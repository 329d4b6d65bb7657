"""Messages the leader published and no worker has claimed yet, kept by id.

The fair fill and the cap admissions each publish at most so many messages at a time, so
each must know how many of its messages still wait in the broker. Counting them in Postgres
would read a backlog (they are few among many scheduled jobs); instead each remembers the ids
it published and reads them back by primary key, and counts from the jobs only when it takes
over (a new leader's term), since messages a former leader published are not in its memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from sqlalchemy import Connection

from jobengine.store import quotas_queries as q
from jobengine.store.database import run_all

Seed = Callable[[Connection], list[dict[str, Any]]]


class Leading(Protocol):
    """What these leader-side services ask of leadership: the term they act in
    (``jobengine.maintenance.leadership.Leadership``)."""

    @property
    def term(self) -> int | None: ...


class InFlight:
    def __init__(self) -> None:
        self._known: dict[str, dict[int, str]] = {}
        self._term: int | None = None

    def start_term(self, term: int | None) -> None:
        """Forget everything when leadership changed hands: the next read counts afresh."""
        if term != self._term:
            self._known.clear()
            self._term = term

    def keep_only(self, keys: Iterable[str]) -> None:
        wanted = set(keys)
        for gone in set(self._known) - wanted:
            del self._known[gone]

    def current(self, conn: Connection, key: str, seed: Seed) -> dict[int, str]:
        """Job id → tenant of ``key``'s messages not yet claimed, read in ``conn``."""
        known = self._known.get(key)
        if known is None:
            rows = seed(conn)
        elif known:
            rows = run_all(conn, q.STILL_IN_FLIGHT, {"ids": list(known)})
        else:
            rows = []
        flying = {r["id"]: r["tenant_id"] for r in rows}
        self._known[key] = flying
        return flying

    def add(self, key: str, published: dict[int, str]) -> None:
        self._known.setdefault(key, {}).update(published)
