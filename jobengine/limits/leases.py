"""Token leases: one bucket write for many jobs while a limit is far from biting.

Booking every job's slot writes its bucket's row once per job, and that write was most of what
a limit that never holds a job cost a submission. So a process that submits to a bucket with
room to spare takes a lease of several tokens in one statement (``LEASE_BUCKETS``) and admits
its next jobs from it, each written as if no limit applied but for one condition
(``store.queries.LEASE_HOLDS``): the lease's transaction committed (or is the job's own) and
the job's ``now()``, the time its birth records, lies within ``LEASE_SECONDS`` after the
lease's. A lease rolled back, still open in another thread or outlived writes nothing, and the
job books its slot as before. A lease's unspent tokens lapse with it (never over-admitting,
only ever under).

Why a lease never lets admissions run ahead of the bucket: its tokens are booked as if all of
them were spent at the end of its window (the TAT moves on from ``max(TAT, now + window)``),
while each is in fact spent within it, and no earlier than the lease was taken, when the bucket
already had room for all of them. Replaying the bucket's bookings in lock order, every window
``[a, b]`` of admissions then starts at a booking whose virtual time is at least ``a`` (a
lease's virtual time is the end of its window, not before its last admission) and ends at one
whose TAT is at most ``b`` plus the capacity (a lease is granted only while the bucket stays at
least half full), so the admissions in it are at most ``burst + rate * (b - a)``, as GCRA's.

A lease is granted only while the bucket stays at least half full for everyone else, and only
for limits whose half-burst exceeds what they refill over the window by ``MIN_TOKENS``; a limit
of small burst (``10/s burst 5``) is therefore never leased and books each job exactly. Each
lease is sized by the use of the last one (doubled when it ran out, halved when it lapsed mostly
unspent), and a bucket whose leases serve too few submissions to pay for their statement (one
account among many, each submitted to now and then) is booked job by job for a while. Leases
belong to one process: a forked child starts without any.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from jobengine.limits.definition import SECONDS_PER, RateLimit
from jobengine.store import limits_queries as q
from jobengine.store.database import run_all

LEASE_SECONDS = 0.2
"""How long a lease's tokens may be spent: a bucket sees the rate over this window as spent
while a lease is out, so it is short next to the burst of a limit worth leasing."""
MIN_TOKENS = 32
"""The smallest lease worth a write of its own."""
MIN_DRAWS = 4
"""A lease serving fewer submissions cost more statements than booking each would have."""
SHUN_SECONDS = 1.0
MAX_SHUN_SECONDS = 16.0
"""How long a bucket whose last lease did not pay is booked job by job: the first time, and
at most, as it keeps happening."""
MAX_BUCKETS = 4096
"""Buckets a process remembers before it forgets the idle ones."""

Bucket = tuple[str, str]


def most_leased(limit: RateLimit) -> int:
    """The most tokens one lease of ``limit`` may take: the window and the lease together
    within half the burst (0: the limit is never leased)."""
    refilled = limit.rate / SECONDS_PER[limit.per] * LEASE_SECONDS
    most = math.floor(limit.burst / 2 - refilled)
    return most if most >= MIN_TOKENS else 0


@dataclass(frozen=True, slots=True)
class Drawn:
    """Tokens drawn from leases: the conditions under which their jobs may be written."""

    xids: tuple[str, ...]
    limits: tuple[str, ...]
    start: datetime
    until: datetime
    since: datetime
    """The earliest lease's start: its limits must be unchanged since."""

    sent: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Made once, as text: every job drawn from one lease sends the same, and text costs
        # the client less to send than datetimes.
        sent = {
            "lease_xids": ",".join(self.xids),
            "lease_limits": ",".join(self.limits),
            "lease_start": self.start.isoformat(),
            "lease_until": self.until.isoformat(),
            "lease_since": self.since.isoformat(),
        }
        object.__setattr__(self, "sent", sent)

    def params(self) -> dict[str, Any]:
        """As ``store.queries.LEASE_HOLDS`` takes them."""
        return self.sent


@dataclass(slots=True)
class _Lease:
    xid: str
    start: datetime
    until: datetime
    lapses: float
    size: int
    left: int
    draws: int = 0
    alone: Drawn | None = None
    """What a draw from this lease alone is: the same for each, so made once."""


@dataclass(slots=True)
class _Bucket:
    """What this process knows of one bucket: its lease, the size of the next one, and until
    when it books job by job instead (its leases served too few submissions to pay)."""

    lease: _Lease | None = None
    size: int = MIN_TOKENS
    shunned_until: float = -math.inf
    shun_seconds: float = SHUN_SECONDS


class Leases:
    """One process's leases on one database's buckets."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[Bucket, _Bucket] = {}
        self._lock = threading.Lock()

    def draw(
        self, conn: Connection, needs: Mapping[Bucket, int], limits: Mapping[str, RateLimit]
    ) -> Drawn | None:
        """Take ``needs`` (units per bucket) from this process's leases, leasing in ``conn``'s
        transaction the buckets it holds too little of; None when some bucket cannot be
        leased now, and the caller books every bucket's slots instead. A lease taken here
        stays for later draws even then: its tokens were booked, with the caller's
        transaction."""
        now = self._clock()
        if len(needs) == 1:
            [(bucket, units)] = needs.items()
            with self._lock:
                known = self._buckets.get(bucket)
                held = None if known is None else known.lease
                if held is not None and held.lapses > now and held.left >= units:
                    held.left -= units
                    held.draws += 1
                    return held.alone
        wanted: dict[Bucket, int] = {}
        with self._lock:
            for bucket, units in needs.items():
                known = self._buckets.get(bucket)
                held = None if known is None else known.lease
                if held is not None and held.lapses > now and held.left >= units:
                    continue
                most = most_leased(limits[bucket[0]])
                if units > most:
                    return None
                if known is None:
                    known = self._buckets[bucket] = _Bucket()
                if not self._worth_leasing(known, now):
                    return None
                wanted[bucket] = max(units, min(most, known.size))
        if wanted:
            self._lease(conn, wanted, now)
        with self._lock:
            drawn = [self._buckets[bucket].lease for bucket in needs]
            leases = [
                lease
                for lease, units in zip(drawn, needs.values(), strict=True)
                if lease is not None and lease.lapses > now and lease.left >= units
            ]
            if len(leases) < len(needs):
                return None
            for lease, units in zip(leases, needs.values(), strict=True):
                lease.left -= units
                lease.draws += 1
        if len(leases) == 1:
            return leases[0].alone
        return Drawn(
            xids=tuple(sorted({lease.xid for lease in leases})),
            limits=tuple(sorted({name for name, _ in needs})),
            start=max(lease.start for lease in leases),
            until=min(lease.until for lease in leases),
            since=min(lease.start for lease in leases),
        )

    def refused(self, drawn: Drawn) -> None:
        """Postgres wrote nothing under ``drawn``: forget the leases it came from."""
        with self._lock:
            for known in self._buckets.values():
                if known.lease is not None and known.lease.xid in drawn.xids:
                    known.lease = None

    def _worth_leasing(self, known: _Bucket, now: float) -> bool:
        """Whether to lease ``known`` again now, sizing its next lease by the last one's use:
        doubled when it ran out, halved when it lapsed mostly unspent. A lease that served
        fewer than ``MIN_DRAWS`` submissions cost more statements than it saved: the bucket
        is then booked job by job for a while, twice as long each time it happens again."""
        if known.shunned_until > now:
            return False
        held = known.lease
        if held is None:
            return True
        if held.lapses > now:
            known.size *= 2
        elif held.draws < MIN_DRAWS:
            known.lease = None
            known.shunned_until = now + known.shun_seconds
            known.shun_seconds = min(known.shun_seconds * 2, MAX_SHUN_SECONDS)
            return False
        elif held.left > held.size // 2:
            known.size = max(MIN_TOKENS, known.size // 2)
        if held.draws >= MIN_DRAWS:
            known.shun_seconds = SHUN_SECONDS
        return True

    def _lease(self, conn: Connection, wanted: Mapping[Bucket, int], now: float) -> None:
        rows = run_all(
            conn, q.LEASE_BUCKETS, {"wanted": _json_rows(wanted), "horizon": LEASE_SECONDS}
        )
        lapses = now + LEASE_SECONDS
        window = timedelta(seconds=LEASE_SECONDS)
        granted = {(r["limit_name"], r["key"]): r for r in rows}
        with self._lock:
            for bucket, tokens in wanted.items():
                known = self._buckets.setdefault(bucket, _Bucket())
                row = granted.get(bucket)
                if row is None:  # the bucket has too little room: book until the window ends
                    known.lease = None
                    known.shunned_until = lapses
                    continue
                start, xid = row["start"], row["xid"]
                lease = _Lease(xid, start, start + window, lapses, tokens, tokens)
                lease.alone = Drawn((xid,), (bucket[0],), start, lease.until, start)
                known.lease = lease
            if len(self._buckets) > MAX_BUCKETS:
                self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        """Drop what is known of buckets with no live lease and no shun: a limit keyed by a
        payload field may see more keys than a process should remember."""
        for bucket in [
            b
            for b, known in self._buckets.items()
            if (known.lease is None or known.lease.lapses <= now) and known.shunned_until <= now
        ]:
            del self._buckets[bucket]


def _json_rows(wanted: Mapping[Bucket, int]) -> str:
    rows = [{"limit_name": n, "key": k, "tokens": tokens} for (n, k), tokens in wanted.items()]
    return json.dumps(rows, separators=(",", ":"))


_books: weakref.WeakKeyDictionary[Engine, Leases] = weakref.WeakKeyDictionary()
_books_lock = threading.Lock()


def leases_of(conn: Connection) -> Leases:
    """This process's leases on ``conn``'s database (per engine: a lease is only ever spent
    by the process that holds it, whichever engine it took it through)."""
    found = _books.get(conn.engine)  # a dict read needs no lock; only the first write does
    if found is not None:
        return found
    with _books_lock:
        return _books.setdefault(conn.engine, Leases())


def _forget_all() -> None:
    """A forked child must not spend its parent's leases: both would spend the same tokens."""
    global _books, _books_lock
    _books = weakref.WeakKeyDictionary()
    _books_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_all)
