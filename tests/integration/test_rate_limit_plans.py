"""The rate limits' statements read only their own buckets, however many idle ones pile up:
``take_slots`` finds its buckets by primary key, and ``limit_status`` (every scrape of
``/metrics``) reads the busy ones through ``ix_rate_limit_buckets_tat``. Counted, not timed:
``pg_stat_user_tables`` before and after, on tables never analysed since they filled.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

from jobengine.domain.job import NewJob
from jobengine.limits import registry
from jobengine.limits.admission import admit
from jobengine.limits.definition import RateLimit, Scope
from jobengine.store.database import transaction
from jobengine.submission import submit

IDLE_BUCKETS = 20_000
PER_ACCOUNT = RateLimit(
    "per-account", Scope.KEY, rate=1, per="second", burst=1, job_type="noop", key_path="account"
)


def _bucket_reads(conn: Connection) -> tuple[int, int]:
    """Sequential scans of the buckets, and bucket rows read by any scan."""
    conn.execute(text("SELECT pg_stat_force_next_flush()"))
    conn.execute(text("SELECT pg_stat_clear_snapshot()"))
    scans, read = conn.execute(
        text(
            "SELECT seq_scan, seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables"
            " WHERE relname = 'rate_limit_buckets'"
        )
    ).one()
    return int(scans), int(read)


def test_slots_and_status_read_a_few_buckets_among_twenty_thousand_idle_ones(
    engine: Engine,
) -> None:
    with transaction(engine) as conn:
        conn.execute(text("ALTER TABLE rate_limit_buckets SET (autovacuum_enabled = false)"))
        registry.set_limit(conn, PER_ACCOUNT)
        # Statements planned first while the table is empty, as after a fresh install.
        admit(conn, [NewJob(type="noop", payload={"account": "warm"})], [PER_ACCOUNT])
        registry.statuses(conn)
        conn.execute(
            text(
                "INSERT INTO rate_limit_buckets (limit_name, key, tat) SELECT 'per-account',"
                " 'idle-' || n, now() - interval '1 hour' FROM generate_series(1, :n) AS n"
            ),
            {"n": IDLE_BUCKETS},
        )
    with engine.connect() as conn:
        before = _bucket_reads(conn)
    with transaction(engine) as conn:
        admitted = admit(
            conn,
            [NewJob(type="noop", payload={"account": f"busy-{n % 3}"}) for n in range(6)],
            [PER_ACCOUNT],
        )
        [status] = registry.statuses(conn)
    with engine.connect() as conn:
        scans, read = (a - b for a, b in zip(_bucket_reads(conn), before, strict=True))

    assert [why for why, _ in admitted.births or []].count(
        "rate_limited: per-account key busy-0"
    ) == 1
    assert (status.waiting, status.tokens) == (3, 0)
    assert scans == 0, "no statement scanned every bucket"
    assert read <= 20, f"read {read} bucket rows for 3 busy buckets"


def _job_scans(conn: Connection) -> int:
    conn.execute(text("SELECT pg_stat_force_next_flush()"))
    conn.execute(text("SELECT pg_stat_clear_snapshot()"))
    return int(
        conn.execute(
            text("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'jobs'")
        ).scalar_one()
    )


def test_a_limited_submission_planned_on_an_empty_jobs_table_never_scans_it_once_it_fills(
    engine: Engine,
) -> None:
    ten = RateLimit("ten", Scope.TYPE, rate=1e6, per="second", burst=1_000_000, job_type="noop")
    with engine.begin() as admin:
        admin.execute(text("ALTER TABLE jobs SET (autovacuum_enabled = false)"))
        admin.execute(text("ANALYZE jobs"))  # statistics of an empty table
        registry.set_limit(admin, ten)

    def submit_some(conn: Connection, first: int) -> None:
        for n in range(first, first + 10):  # past five runs: Postgres keeps a generic plan
            with conn.begin():
                submit(conn, NewJob(type="noop", payload={"n": n}))
                submit(conn, NewJob(type="noop", payload={"n": n}, idempotency_key=f"k{n}"))

    with engine.connect() as conn:  # one backend, so its prepared statements stay
        submit_some(conn, 0)
        with engine.begin() as admin:
            admin.execute(
                text(
                    "INSERT INTO jobs (tenant_id, project_id, type, queue, payload, status,"
                    " idempotency_key, completed_at) SELECT 'default', 'p', 'noop', 'default',"
                    " '{}', 'completed', 'bulk-' || n, now() FROM generate_series(1, 20000) AS n"
                )
            )
            before = _job_scans(admin)
        submit_some(conn, 100)
        with engine.connect() as reader:
            conn.execute(text("SELECT pg_stat_force_next_flush()"))
            assert _job_scans(reader) == before
