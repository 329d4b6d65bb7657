"""Statements and round trips to Postgres per job, on every path a job takes, counted on the wire.

Each path runs through the engine's own calls (the producer's ``submit_jobs``, the worker's
``Executor``/``Completer``) on a connection that passes through ``bench.wire_count``'s relay,
so what is counted is what Postgres receives: a statement is an ``Execute`` or a simple
``Query`` (``BEGIN``/``COMMIT``), a round trip ends with a ``Sync`` or a ``Query``. Redis
traffic (publishing) is not counted here; the publisher is a stub.

Paths: submit one job and a batch; claim one job (``scheduled → claimed → running``); claim a
chunk (claimed and started in one statement); complete one job; complete a chunk's jobs (one
flush per chunk) and a batch of ``--batch`` completions through the completer; a retry
(``running → failed → scheduled``).

Prints human lines, then one JSON line. Usage: python bench/round_trips.py [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import Engine, make_url

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.wire_count import CountingRelay, WireCount  # noqa: E402
from config.settings import Settings  # noqa: E402
from jobengine.completer import Completer  # noqa: E402
from jobengine.domain.job import Job, NewJob  # noqa: E402
from jobengine.embedded import EmbeddedPostgres  # noqa: E402
from jobengine.execution import Claim, Executor  # noqa: E402
from jobengine.outcomes import Retry  # noqa: E402
from jobengine.producer import submit_jobs  # noqa: E402
from jobengine.store import migrate  # noqa: E402
from jobengine.store.database import SharedConnection, make_engine, unpooled_engine  # noqa: E402
from jobengine.store.jobs_repository import DispatchRef  # noqa: E402

OWNER = "bench-worker"
SHOW = "--show" in sys.argv
"""Print the first statements of each path (what was counted), to see where they go."""


class NoPublisher:
    def publish(self, ref: DispatchRef, countdown: float | None = None) -> None:
        pass

    def publish_chunk(self, refs: Sequence[DispatchRef]) -> None:
        pass


def per_job(relay: CountingRelay, jobs: int, run: Callable[[], object]) -> dict[str, float]:
    before, seen = relay.count(), len(relay.texts)
    run()
    spent: WireCount = relay.count() - before
    if SHOW:
        for sql in relay.texts[seen : seen + 8]:
            print("    " + " ".join(sql.split())[:150])
    return {
        "statements": round(spent.statements / jobs, 3),
        "round_trips": round(spent.round_trips / jobs, 3),
    }


def measure(
    producer: Engine, worker: Engine, relay: CountingRelay, jobs: int, batch: int, chunk: int
) -> dict[str, dict[str, float]]:
    """Each path on its own jobs; ``producer`` is pooled as a service's engine is, ``worker``
    holds one connection as a worker process does."""
    executor = Executor(worker, lease_ttl_seconds=30, connection=SharedConnection(worker))
    executor.queue_is_limited("default")  # the queue-limit cache is read once, outside counts
    publisher = NoPublisher()
    figures: dict[str, dict[str, float]] = {}
    made: list[Job] = []

    def submit_one_by_one() -> None:
        for _ in range(jobs):
            made.extend(submit_jobs(producer, publisher, [NewJob(type="noop")]))

    figures["submit_one"] = per_job(relay, jobs, submit_one_by_one)
    singles = list(made)

    def submit_batch() -> None:
        made.clear()
        for first in range(0, jobs, batch):
            size = min(batch, jobs - first)
            made.extend(
                submit_jobs(
                    producer,
                    publisher,
                    [NewJob(type="noop") for _ in range(size)],
                    chunk_size=chunk,
                )
            )

    figures[f"submit_batch_of_{batch}"] = per_job(relay, jobs, submit_batch)
    batched = list(made)

    claims: list[Claim] = []

    def claim_one_by_one() -> None:
        for job in singles:
            claim = executor.claim(job.id, OWNER)
            assert claim is not None
            claims.append(claim)

    figures["claim_and_start_one"] = per_job(relay, jobs, claim_one_by_one)

    def complete_one_by_one() -> None:
        for claim in claims:
            assert executor.complete(claim, None) is not None

    figures["complete_one"] = per_job(relay, jobs, complete_one_by_one)

    chunk_claims: list[Claim] = []

    def claim_chunks() -> None:
        for first in range(0, len(batched), chunk):
            ids = [j.id for j in batched[first : first + chunk]]
            chunk_claims.extend(executor.claim_chunk(ids, OWNER))

    figures[f"claim_and_start_chunk_of_{chunk}"] = per_job(relay, jobs, claim_chunks)

    completer = Completer(executor, flush_after_seconds=60, max_batch=batch)
    half = len(chunk_claims) // 2

    def complete_chunks() -> None:
        """As a chunk does: its completions buffered, flushed before its message is acked."""
        for first in range(0, half, chunk):
            for claim in chunk_claims[first : min(first + chunk, half)]:
                completer.add(claim, None)
            completer.flush()

    def complete_batched() -> None:
        """As single messages do when they come faster than the flush interval."""
        for claim in chunk_claims[half:]:
            completer.add(claim, None)
        completer.flush()

    figures[f"complete_chunk_of_{chunk}"] = per_job(relay, half, complete_chunks)
    figures[f"complete_batched_{batch}"] = per_job(
        relay, len(chunk_claims) - half, complete_batched
    )

    retried = submit_jobs(producer, publisher, [NewJob(type="noop") for _ in range(jobs)])
    retry_claims = [executor.claim(j.id, OWNER) for j in retried]

    def retry_each() -> None:
        for claim in retry_claims:
            assert claim is not None
            outcome = Retry(error={"code": "BENCH", "message": "m"}, countdown=60, reason="r")
            assert executor.record(claim, outcome) is not None

    figures["retry"] = per_job(relay, jobs, retry_each)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--chunk-size", type=int, default=Settings().dispatch_chunk_size)
    parser.add_argument("--show", action="store_true", help="print each path's first statements")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobengine-round-trips-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        url = pg.start()
        admin = make_engine(url)
        relay: CountingRelay | None = None
        engines: list[Engine] = []
        try:
            migrate.upgrade(admin)
            parsed = make_url(url)
            relay = CountingRelay(parsed.host or "127.0.0.1", parsed.port or 5432)
            relayed = parsed.set(port=relay.port).render_as_string(hide_password=False)
            engines = [
                make_engine(relayed),
                unpooled_engine(relayed, application_name="bench-round-trips"),
            ]
            with engines[0].connect():  # the pool's first connection and dialect set-up
                pass
            figures = measure(*engines, relay, args.jobs, args.batch, args.chunk_size)
        finally:
            for engine in engines:
                engine.dispose()
            if relay is not None:
                relay.close()
            admin.dispose()
            pg.stop()
    for path, f in figures.items():
        print(f"{path:>28}: {f['statements']:6.3f} statements, {f['round_trips']:6.3f} round trips")
    single = sum(figures[k]["statements"] for k in ("claim_and_start_one", "complete_one"))
    chunked = sum(
        figures[k]["statements"]
        for k in (
            f"claim_and_start_chunk_of_{args.chunk_size}",
            f"complete_chunk_of_{args.chunk_size}",
        )
    )
    print(f"a job's claim and completion: {single:.3f} statements alone, {chunked:.3f} chunked")
    print(
        json.dumps(
            {
                "bench": "round_trips",
                "jobs": args.jobs,
                "per_job": figures,
                "worker_statements_per_job_single": round(single, 3),
                "worker_statements_per_job_chunked": round(chunked, 3),
                "chunked_to_single_ratio": round(chunked / single, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
