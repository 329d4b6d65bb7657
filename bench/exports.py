"""A provenance export's peak memory and rate at 100,000 jobs, against 10,000 and against
what a user would run instead: ``psql`` with ``\\copy (SELECT row_to_json(...)) TO`` a file.

One private Postgres, one migrated database filled by set-based SQL: ``--jobs`` completed jobs
of tenant ``big`` and a tenth as many of tenant ``small``, each with four history rows (born
scheduled, claimed, running, completed) and a result, plus a few audit entries touching
them. Each export runs in a fresh process (``--child``) that reports its own peak RSS
(``ru_maxrss``), so the figures are the exporter's and nothing else's; an export of a tenant
with no jobs gives the floor (interpreter, imports, driver). Flat memory means the 100k
export's peak stays within a small margin of the 10k one's. ``psql`` copies the same rows
(jobs, then their history, as JSON lines) with no chain, no outcome and no audit entries:
the rate of reading the rows out, the least any export costs. ``verify`` is timed on the
100k file.

Prints human lines, then one JSON line.

Usage: python bench/exports.py [--jobs 100000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, make_url, text  # noqa: E402

from jobengine.audit.export import PAGE_SIZE, Exporter, Selection, take_bound  # noqa: E402
from jobengine.audit.export_file import write  # noqa: E402
from jobengine.audit.verify import verify  # noqa: E402
from jobengine.embedded import EmbeddedPostgres, _postgres_bin_dir  # noqa: E402
from jobengine.services import upgrade_database  # noqa: E402
from jobengine.store.database import make_engine, normalize_url  # noqa: E402

FILL_JOBS = """
INSERT INTO jobs (tenant_id, project_id, type, queue, payload, status, attempt, result,
                  created_at, scheduled_at, started_at, completed_at)
SELECT :tenant, 'p', 'noop', 'default', jsonb_build_object('i', g, 'name', 'job-' || g),
       'completed', 1, jsonb_build_object('ok', g), now(), now(), now(), now()
FROM generate_series(1, :n) AS g
"""

FILL_HISTORY = """
INSERT INTO job_history (job_id, from_status, to_status, actor, reason, attempt, details, at)
SELECT j.id, s.f::job_status, s.t::job_status, s.actor, s.reason, s.att, '{}'::jsonb,
       j.created_at + s.off
FROM jobs AS j CROSS JOIN (VALUES
    (1, NULL, 'scheduled', 'api:bench', 'submitted', 0, interval '0'),
    (2, 'scheduled', 'claimed', 'worker-1', NULL, 1, interval '1 millisecond'),
    (3, 'claimed', 'running', 'worker-1', NULL, 1, interval '2 milliseconds'),
    (4, 'running', 'completed', 'worker-1', 'handler returned', 1, interval '3 milliseconds')
) AS s(ord, f, t, actor, reason, att, off)
WHERE j.tenant_id = :tenant
ORDER BY j.id, s.ord
"""

FILL_AUDIT = """
WITH e AS (
    INSERT INTO audit_entries (actor, surface, action, object_kind, object_id, tenant, outcome)
    SELECT 'cli:op@host', 'cli', 'job.cancel', 'job', g::text, :tenant, 'done'
    FROM generate_series(1, 20) AS g
    RETURNING id
)
INSERT INTO audit_entry_jobs (entry_id, job_id)
SELECT e.id, j.id FROM e, LATERAL (SELECT id FROM jobs WHERE tenant_id = :tenant
                                   ORDER BY id LIMIT 5) AS j
"""

COPY_JOBS = (
    "\\copy (SELECT row_to_json(j) FROM jobs AS j WHERE tenant_id = 'big' ORDER BY id) TO '{out}'"
)
COPY_HISTORY = (
    "\\copy (SELECT row_to_json(h) FROM job_history AS h JOIN jobs AS j ON j.id = h.job_id "
    "WHERE j.tenant_id = 'big' ORDER BY h.job_id, h.id) TO '{out}'"
)


def child(url: str, tenant: str, out: Path, page_size: int) -> None:
    """One export in this process; prints what it cost as one JSON line."""
    engine = make_engine(url, pool_size=1)
    started = time.perf_counter()
    bound = take_bound(engine)
    exporter = Exporter(engine, Selection(tenant=tenant), bound, page_size=page_size)
    with out.open("xb") as stream:
        written = write(exporter, stream)
    seconds = time.perf_counter() - started
    engine.dispose()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "lines": written.lines, "peak_rss_kb": peak_kb}))


def run_child(url: str, tenant: str, out: Path, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", url, tenant, str(out), str(page_size)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures


def fill(url: str, jobs: int) -> None:
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        for tenant, n in (("big", jobs), ("small", jobs // 10)):
            conn.execute(text(FILL_JOBS), {"tenant": tenant, "n": n})
            conn.execute(text(FILL_HISTORY), {"tenant": tenant})
            conn.execute(text(FILL_AUDIT), {"tenant": tenant})
        conn.execute(text("ANALYZE"))
    engine.dispose()


def psql_copy(url: str, work: Path) -> float:
    libpq = make_url(normalize_url(url)).set(drivername="postgresql").render_as_string(False)
    psql = str(_postgres_bin_dir() / "psql")
    started = time.perf_counter()
    for i, command in enumerate((COPY_JOBS, COPY_HISTORY)):
        out = work / f"copy{i}.json"
        subprocess.run(
            [psql, libpq, "-X", "-q", "-c", command.format(out=out)], check=True, timeout=600
        )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-exports-") as tmp:
        work = Path(tmp)
        server = EmbeddedPostgres(work / "pg")
        admin_url = server.start()
        try:
            admin = create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text("CREATE DATABASE bench"))
            admin.dispose()
            url = make_url(normalize_url(admin_url)).set(database="bench")
            db_url = url.render_as_string(hide_password=False)
            upgrade_database(db_url, "head")
            started = time.perf_counter()
            fill(db_url, args.jobs)
            print(
                f"filled {args.jobs:,} + {args.jobs // 10:,} jobs, 4 history rows each, "
                f"in {time.perf_counter() - started:.1f}s"
            )
            empty = run_child(db_url, "nobody", work / "empty.ndjson")
            small = run_child(db_url, "small", work / "small.ndjson")
            big = run_child(db_url, "big", work / "big.ndjson")
            # The meter's control: the same export in one page, as a fetchall would read it.
            one_page = run_child(db_url, "big", work / "one-page.ndjson", page_size=args.jobs)
            assert (work / "one-page.ndjson").read_bytes() == (work / "big.ndjson").read_bytes()
            copy_s = psql_copy(db_url, work)
            started = time.perf_counter()
            verified = verify(work / "big.ndjson")
            verify_s = time.perf_counter() - started
            size_mb = (work / "big.ndjson").stat().st_size / 2**20
        finally:
            server.stop()
    mb = 1024
    figures = {
        "jobs": args.jobs,
        "history_rows": args.jobs * 4,
        "export_lines": big["lines"],
        "export_mb": round(size_mb, 1),
        "export_s": round(big["seconds"], 2),
        "export_jobs_per_s": round(args.jobs / big["seconds"]),
        "peak_rss_mb_empty": round(empty["peak_rss_kb"] / mb, 1),
        "peak_rss_mb_10pct": round(small["peak_rss_kb"] / mb, 1),
        "peak_rss_mb_full": round(big["peak_rss_kb"] / mb, 1),
        "peak_rss_full_over_10pct": round(big["peak_rss_kb"] / small["peak_rss_kb"], 3),
        "peak_rss_mb_full_in_one_page": round(one_page["peak_rss_kb"] / mb, 1),
        "psql_copy_s": round(copy_s, 2),
        "psql_copy_jobs_per_s": round(args.jobs / copy_s),
        "export_over_psql_rate": round(copy_s / big["seconds"], 3),
        "verify_s": round(verify_s, 2),
        "verify_lines_per_s": round(verified.lines / verify_s),
    }
    print(
        f"export of {args.jobs:,} jobs: {figures['export_s']}s "
        f"({figures['export_jobs_per_s']:,} jobs/s, {figures['export_mb']} MB); "
        f"peak RSS {figures['peak_rss_mb_full']} MB vs {figures['peak_rss_mb_10pct']} MB "
        f"at a tenth, {figures['peak_rss_mb_empty']} MB empty"
    )
    print(
        f"psql \\copy of the same jobs and history: {figures['psql_copy_s']}s "
        f"({figures['psql_copy_jobs_per_s']:,} jobs/s); verify: {figures['verify_s']}s"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
