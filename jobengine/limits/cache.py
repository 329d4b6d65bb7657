"""Each process's copy of the limits, read again after a few seconds.

Submissions decide which limits apply from this copy, so a process without limits pays no
statement for them; the rates themselves are read by ``take_slots`` from the table, so a
changed rate is exact at once and only a new or deleted limit waits for the refresh.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable

from sqlalchemy import Connection, Engine

from jobengine.limits.definition import RateLimit, limit_from_row
from jobengine.store import limits_queries as q

TTL_SECONDS = 2.0


class LimitCache:
    def __init__(
        self, ttl_seconds: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._limits: tuple[RateLimit, ...] = ()
        self._by_name: dict[str, RateLimit] = {}
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def through(self, conn: Connection) -> tuple[RateLimit, ...]:
        """The limits, read through ``conn`` when the copy is older than the TTL."""
        now = self._clock()
        with self._lock:
            if self._read_at is not None and now - self._read_at < self.ttl_seconds:
                return self._limits
        limits = tuple(limit_from_row(r) for r in conn.exec_driver_sql(q.LIST_LIMITS).mappings())
        with self._lock:
            self._limits, self._read_at = limits, now
            self._by_name = {limit.name: limit for limit in limits}
        return limits

    def by_name(self, conn: Connection) -> dict[str, RateLimit]:
        """The same copy, by limit name."""
        self.through(conn)
        return self._by_name

    def forget(self) -> None:
        """Read again on next use: this process just changed a limit."""
        with self._lock:
            self._read_at = None


_process_caches: dict[str, LimitCache] = {}
_engine_caches: weakref.WeakKeyDictionary[Engine, LimitCache] = weakref.WeakKeyDictionary()
_process_lock = threading.Lock()


def cache_of(conn: Connection) -> LimitCache:
    """This process's cache for the database ``conn`` is on (one process may use several),
    shared by every engine on that database, so a limit set through one is seen at once
    through the others. Found by engine first: rendering its URL costs every submission."""
    engine = conn.engine
    found = _engine_caches.get(engine)  # a dict read needs no lock; only the first write does
    if found is not None:
        return found
    with _process_lock:
        found = _engine_caches.get(engine)
        if found is None:
            key = engine.url.render_as_string(hide_password=True)
            found = _engine_caches[engine] = _process_caches.setdefault(key, LimitCache())
        return found


def limits_of(conn: Connection) -> tuple[RateLimit, ...]:
    return cache_of(conn).through(conn)
