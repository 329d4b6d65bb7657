"""Noticing that the broker lost its data, so lost messages are sent again in seconds.

The leader keeps an epoch key in the broker's own database. Redis loses it exactly when it
loses the queued messages beside it (a restart without persistence, a failover to an empty
replica, FLUSHALL), so a missing key means: every job Postgres has as published but
unclaimed has no message any more. Those jobs lose their dispatch mark, page by page, and the
dispatcher publishes them in the same tick, instead of after ``redispatch_after_seconds``.
A restart that kept its data keeps the key too, so nothing is sent again; Redis's ``run_id``
changing is logged as the second signal, to tell the two restarts apart in the logs.

A failover (Sentinel promoting a replica) keeps the key, which replicated long ago, but with
asynchronous replication the replica may lack the last messages the old master took. The
promoted server says so itself: its ``master_replid2`` is the replication id of the master it
followed, the one this leader last saw. Then every job published but unclaimed loses its
dispatch mark as above and is published again: one duplicate per such job (the claim ignores
it) instead of a wait of ``redispatch_after_seconds`` for the few whose message was lost.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import redis
import structlog
from sqlalchemy import Engine

from jobengine.maintenance.leadership import Leadership
from jobengine.maintenance.report import TickReport
from jobengine.store.database import transaction
from jobengine.store.maintenance_repository import MaintenanceRepository

log = structlog.get_logger("jobengine.maintenance.broker_epoch")

EPOCH_KEY = "jobengine:broker-epoch"
PAGE = 1000
SOCKET_TIMEOUT_SECONDS = 5.0
"""Each connect and command of the leader's broker client (``redis_clients.broker_client``)."""


class BrokerEpoch:
    def __init__(self, client: redis.Redis, engine: Engine, leadership: Leadership) -> None:
        self.client = client
        self.engine = engine
        self.leadership = leadership
        self._run_id: str | None = None
        self._replid: str | None = None

    def run(self, report: TickReport) -> None:
        try:
            epoch = self.client.get(EPOCH_KEY)
            run_id = str(self.client.info("server").get("run_id", ""))
            replication = self.client.info("replication")
        except redis.RedisError as exc:
            log.warning("broker_unreachable", error=str(exc))
            return
        if self._run_id is not None and run_id != self._run_id:
            log.warning("broker_restarted", kept_data=epoch is not None, run_id=run_id)
        self._run_id = run_id
        if self._promoted(replication) and epoch is not None:
            forgotten = self._forget_dispatches()
            report.forgotten += forgotten
            log.warning("broker_failed_over", run_id=run_id, forgotten=forgotten)
            return
        if epoch is not None:
            return
        forgotten = self._forget_dispatches()
        report.forgotten += forgotten
        if forgotten:
            log.warning("broker_lost_its_data", epoch_key=EPOCH_KEY, forgotten=forgotten)
        else:  # a new broker, or one that lost nothing we had published
            log.info("broker_epoch_missing", epoch_key=EPOCH_KEY, run_id=run_id)
        try:
            self.client.set(EPOCH_KEY, f"{datetime.now(UTC).isoformat()} {uuid.uuid4().hex}")
        except redis.RedisError as exc:  # next tick finds no key and forgets again: harmless
            log.warning("broker_epoch_not_set", error=str(exc))

    def _promoted(self, replication: dict[str, object]) -> bool:
        """Whether the broker is a replica promoted from the master seen last (a failover)."""
        replid = str(replication.get("master_replid", ""))
        followed = str(replication.get("master_replid2", ""))
        previous, self._replid = self._replid, replid
        return previous is not None and replid != previous and followed == previous

    def _forget_dispatches(self) -> int:
        forgotten = 0
        after = 0
        while True:
            self.leadership.ensure()
            with transaction(self.engine) as conn:
                self.leadership.fence(conn)
                repo = MaintenanceRepository(conn)
                page = repo.published_unclaimed(after, PAGE)
                forgotten += repo.forget_dispatches(page)
            if len(page) < PAGE:
                return forgotten
            after = page[-1]
