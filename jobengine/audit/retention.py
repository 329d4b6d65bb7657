"""The one code path that deletes audit entries: those older than
``JOBENGINE_AUDIT_RETENTION_DAYS``, by the leader, in batches.

The database refuses any other delete (migration 0017's trigger); this task alone sets
``jobengine.audit_retention`` for its own transactions. Unset, the default, keeps entries
forever: the log is what an auditor asks for, and how long it must be kept is the
installation's policy, not ours to guess.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection, Engine

from jobengine.audit.queries import DELETE_EXPIRED
from jobengine.store.database import transaction


def prune_audit(
    engine: Engine,
    *,
    before: datetime,
    batch: int = 5000,
    each_batch: Callable[[Connection], None] | None = None,
) -> int:
    """Delete entries older than ``before`` (with their job rows), one short transaction per
    batch; ``each_batch`` runs first in each (the leader's fence). Returns how many went."""
    removed = 0
    while True:
        with transaction(engine) as conn:
            if each_batch is not None:
                each_batch(conn)
            conn.exec_driver_sql("SET LOCAL jobengine.audit_retention = 'on'")
            gone = conn.exec_driver_sql(DELETE_EXPIRED, {"before": before, "batch": batch})
            removed += gone.rowcount
        if gone.rowcount < batch:
            return removed
