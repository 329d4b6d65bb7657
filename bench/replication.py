"""What synchronous replication costs the engine: no-op jobs per second, submitted to
``completed``, on one primary with a streaming standby, asynchronous (Postgres' default) and
synchronous (``synchronous_standby_names = '*'``) in turn, side by side in one run on the same
servers (loopback, fsync on, both clusters on the same disk), the order alternating by round.

Synchronous replication is what closes the window in which a failover loses acknowledged
transitions (deploy/README.md: High availability); this prints its price on this machine.
On a real network each commit also waits one round trip to the standby.

Prints human lines, then one JSON line (medians over the rounds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.celery_systems import jobengine, worker_env
from bench.harness import measure_backlog, postmaster_pid, wait_for
from config.settings import Settings
from jobengine.embedded import EmbeddedRedis
from tests.chaos.replicas import standby_of
from tests.chaos.servers import ChaosPostgres

MODES = {"asynchronous": "", "synchronous": "*"}


def replicate(primary: ChaosPostgres, mode: str) -> None:
    """Set the primary's ``synchronous_standby_names`` and wait until the standby is in it."""
    wanted = "sync" if MODES[mode] else "async"
    with primary.connect() as conn:
        conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{MODES[mode]}'")
        conn.execute("SELECT pg_reload_conf()")
        state = "SELECT sync_state FROM pg_stat_replication"
        wait_for(lambda: conn.execute(state).fetchone() == (wanted,), 30, f"standby {wanted}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=Settings().dispatch_chunk_size)
    args = parser.parse_args()

    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="jobengine-bench-") as tmp:
        root = Path(tmp)
        primary = ChaosPostgres(root / "pg")
        primary.start()
        broker = EmbeddedRedis(root / "redis")
        broker_url = broker.start()
        standby: ChaosPostgres | None = None
        try:
            standby = standby_of(primary, root / "standby")
            env = worker_env(primary.url, broker_url, 1, False)
            postmaster = postmaster_pid(primary.server)
            for n in range(args.rounds):
                for mode in list(MODES) if n % 2 == 0 else list(MODES)[::-1]:
                    replicate(primary, mode)
                    with jobengine(
                        primary.url,
                        env,
                        args.concurrency,
                        root,
                        chunk_size=args.chunk_size,
                        batch=500,
                    ) as started:
                        figures = measure_backlog(mode, started.running, args.jobs, postmaster)
                    print(f"round {n + 1}: " + figures.line())
                    rates[mode].append(figures.jobs_per_s)
        finally:
            broker.stop()
            if standby is not None:
                standby.stop()
            primary.stop()
    asynchronous = statistics.median(rates["asynchronous"])
    synchronous = statistics.median(rates["synchronous"])
    print(
        json.dumps(
            {
                "bench": "replication",
                "jobs": args.jobs,
                "rounds": args.rounds,
                "concurrency": args.concurrency,
                "chunk_size": args.chunk_size,
                "async_standby_jobs_per_s": round(asynchronous, 1),
                "sync_standby_jobs_per_s": round(synchronous, 1),
                "sync_ratio": round(synchronous / asynchronous, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
