"""What the console's jobs page pays for its counts per state at millions of jobs.

Fills ``jobs`` with ``--jobs`` rows (90% completed, the rest failed, scheduled and running,
over ``--tenants`` tenants and four types), analyzes, then times ``views.state_counts`` (the
eight counts the page shows) for an admin's first view (no filter), one tenant, one type, and
a text search, each the median of ``--rounds``, and says which counts were estimates. Prints
figures, never passes or fails; the last line is JSON.

Usage: python bench/console_counts.py [--jobs N] [--tenants T] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.transitions import bench_database  # noqa: E402
from jobengine.console import views  # noqa: E402
from jobengine.domain.status import JobStatus  # noqa: E402
from jobengine.store import migrate  # noqa: E402
from jobengine.store.database import make_engine, transaction  # noqa: E402
from jobengine.store.jobs_repository import JobFilter  # noqa: E402
from jobengine.store.metrics_repository import fold_all  # noqa: E402

FILL = """
INSERT INTO jobs (tenant_id, project_id, type, queue, payload, status, scheduled_at,
                  started_at, completed_at, lease_owner, lease_expires_at)
SELECT 't' || (i %% %(tenants)s), 'p', (ARRAY['resize', 'email', 'report', 'etl'])[1 + i %% 4],
       'default', jsonb_build_object('n', i),
       (CASE WHEN i %% 10 < 9 THEN 'completed' WHEN i %% 30 = 9 THEN 'failed'
             WHEN i %% 30 = 19 THEN 'scheduled' ELSE 'running' END)::job_status,
       now(), now(), CASE WHEN i %% 10 < 9 OR i %% 30 = 9 THEN now() END,
       CASE WHEN i %% 10 = 9 AND i %% 30 NOT IN (9, 19) THEN 'bench' END,
       CASE WHEN i %% 10 = 9 AND i %% 30 NOT IN (9, 19) THEN now() + interval '1 hour' END
FROM generate_series(%(start)s::bigint, %(end)s::bigint) AS i
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with bench_database() as url:
        engine = make_engine(url, pool_size=1, max_overflow=0)
        migrate.upgrade(engine)
        started = time.perf_counter()
        step = 200_000
        for start in range(1, args.jobs + 1, step):
            with transaction(engine) as conn:
                conn.exec_driver_sql(
                    FILL,
                    {
                        "tenants": args.tenants,
                        "start": start,
                        "end": min(start + step - 1, args.jobs),
                    },
                )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE jobs")
        fold_all(engine)
        print(f"filled {args.jobs:,} jobs in {time.perf_counter() - started:.1f} s")
        cases = {
            "admin, no filter": JobFilter(),
            "one tenant": JobFilter(tenant_id="t3"),
            "one type": JobFilter(types=("email",)),
            "text search": JobFilter(tenant_id="t3", text="no such text"),
        }
        figures = {}
        for name, flt in cases.items():
            times = []
            counts = {}
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                with transaction(engine) as conn:
                    counts = views.state_counts(conn, flt)
                times.append((time.perf_counter() - t0) * 1000)
            ms = statistics.median(times)
            estimated = sorted(s.value for s, c in counts.items() if c.estimated)
            shown = {s.value: c.n for s, c in counts.items() if c.n}
            print(f"{name:18} {ms:8.1f} ms  estimated: {', '.join(estimated) or 'none'}  {shown}")
            figures[name] = {
                "ms": round(ms, 1),
                "estimated": estimated,
                "completed": counts[JobStatus.COMPLETED].n,
            }
        engine.dispose()
        print(json.dumps({"jobs": args.jobs, "cases": figures}))


if __name__ == "__main__":
    main()
