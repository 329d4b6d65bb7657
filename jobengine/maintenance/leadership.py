"""Leadership of the fleet's maintenance as a lease row with a TTL (River's elector, ours).

The lease is timed twice. The database's clock decides who may take it (``expires_at``); this
process's monotonic clock decides when it stops acting: its deadline is the moment it *sent*
its last successful renewal plus the TTL, which is never later than the row's ``expires_at``.
A leader that was frozen (SIGSTOP, a long GC pause, a partition) wakes past its deadline and
does nothing until it has won the lease again; each maintenance transaction also locks the row
as still ours (``fence``), so no write of an old leader can land after a takeover.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from sqlalchemy import Connection, Engine

from jobengine.errors import JobEngineError
from jobengine.store.database import transaction
from jobengine.store.leadership_repository import LeadershipRepository

log = structlog.get_logger("jobengine.maintenance.leadership")

ROLE = "maintenance"


class LeadershipLost(JobEngineError):
    """This process no longer leads; maintenance stops until it wins the lease back."""

    code = "LEADERSHIP_LOST"
    hint = "Another reaper leads now, or this one could not renew in time; nothing to do."
    retryable = True


class Leadership:
    def __init__(
        self,
        engine: Engine,
        holder: str,
        ttl_seconds: float,
        *,
        role: str = ROLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.holder = holder
        self.ttl_seconds = ttl_seconds
        self.role = role
        self._clock = clock
        self._term: int | None = None
        self._deadline = float("-inf")
        self._renewed = float("-inf")

    @property
    def term(self) -> int | None:
        return self._term

    def leading(self) -> bool:
        return self._term is not None and self._clock() < self._deadline

    def acquire(self) -> bool:
        """Win or renew the lease; False while another holder's lease is live.

        A failure to reach the database ends leadership here and now (then re-raises): a
        leader that cannot renew must not go on acting on a lease it may have lost.
        """
        sent = self._clock()
        try:
            with transaction(self.engine) as conn:
                won = LeadershipRepository(conn).acquire(self.role, self.holder, self.ttl_seconds)
        except BaseException:
            self.step_down("renewal failed")
            raise
        if won is None:
            self.step_down("another holder's lease is live")
            return False
        if won.term != self._term:
            log.info("leadership_acquired", holder=self.holder, term=won.term, role=self.role)
        self._term = won.term
        self._deadline = sent + self.ttl_seconds
        self._renewed = sent
        return True

    def ensure(self) -> None:
        """Before each maintenance step and page: raise ``LeadershipLost`` unless still leading.

        Renews once half the TTL has passed since the last renewal, so a long tick keeps it.
        """
        if not self.leading():
            self.step_down("lease ran out on this process's clock")
            raise LeadershipLost(f"{self.holder} no longer leads {self.role}")
        if self._clock() - self._renewed > self.ttl_seconds / 2 and not self.acquire():
            raise LeadershipLost(f"{self.holder} was replaced as leader of {self.role}")

    def fence(self, conn: Connection) -> None:
        """Inside the caller's transaction: hold the row as ours until it ends, or raise."""
        term = self._term
        if term is None or not self.leading():
            self.step_down("lease ran out on this process's clock")
            raise LeadershipLost(f"{self.holder} no longer leads {self.role}")
        if not LeadershipRepository(conn).fence(self.role, self.holder, term):
            self.step_down("the row names another holder or has expired")
            raise LeadershipLost(f"{self.holder} was replaced as leader of {self.role}")

    def step_down(self, why: str) -> None:
        """Stop acting at once (no database needed); the lease row runs out by itself."""
        if self._term is not None:
            log.warning("leadership_lost", holder=self.holder, term=self._term, why=why)
        self._term = None
        self._deadline = float("-inf")

    def release(self) -> None:
        """On a clean exit, let the next leader take over now rather than after the TTL."""
        term = self._term
        self._term = None
        self._deadline = float("-inf")
        if term is None:
            return
        try:
            with transaction(self.engine) as conn:
                LeadershipRepository(conn).release(self.role, self.holder, term)
            log.info("leadership_released", holder=self.holder, term=term, role=self.role)
        except Exception as exc:  # exiting anyway: the row expires by itself within the TTL
            log.info("leadership_release_failed", holder=self.holder, error=str(exc))
