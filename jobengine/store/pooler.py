"""Connections through a pooler in transaction mode (PgBouncer's ``pool_mode = transaction``).

Such a pooler lends a server connection to a client for one transaction (in autocommit, one
statement), then to another client; so nothing the engine leaves on a connection between
transactions may matter. Of everything that could (deploy/RUNBOOK.md, "PgBouncer"), the
engine relies on two, and ``JOBENGINE_DB_POOLER=transaction`` turns both off:

- server-side prepared statements (``database.run_all``'s ``prepare=True``): one is made on
  one server connection and later executed by name on whichever the next transaction gets,
  where it does not exist (PgBouncer 1.21+ can track protocol-level ones; 1.18 cannot);
- the reaper's ``options`` startup parameter (its statement, lock-wait and open-transaction
  bounds): PgBouncer before 1.20 refuses the parameter, later ones take only the few settings
  they track, and a ``SET`` would stay on the server connection for the next client. Through
  the pooler the bounds belong to the reaper's own pool instead (a ``connect_query`` in its
  database entry, see ``deploy/pgbouncer/pgbouncer.ini``), and the reaper checks at start that
  they arrived (``role_connections.check_reaper_bounds``).

Read once per process from the settings, as every other ``JOBENGINE_*`` variable is.
"""

from __future__ import annotations

from typing import Any

from config.settings import get_settings

UNPREPARED: dict[str, Any] = {"prepare_threshold": None}
"""psycopg prepares nothing on the server, not even ``run_all``'s explicit requests: each
statement is parsed and planned where it runs (measured in deploy/RUNBOOK.md, "PgBouncer")."""


def transaction_pooled() -> bool:
    """Whether this process reaches Postgres through a pooler in transaction mode."""
    return get_settings().db_pooler == "transaction"
