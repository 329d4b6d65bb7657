"""What a large backfill costs the leader, in one run: one JSON line at the end.

A backfill of ``--slots`` slots (one a minute) is created by an in-process leader (the
maintenance ``Reaper``, with a broker that drops messages, so only Postgres work is timed)
ticking at ``--interval`` seconds, and waking sooner while the backfiller has a full batch
to do. Meanwhile a probe job comes due every ``--probe-every`` seconds; its promotion
latency (``scheduled_at`` minus the time it came due) is measured first with no backfill
(idle), then while the backfill is created. Figures: slots created per second, the
backfiller's share of each tick and whole ticks (max and p99), and the probes' latency (p50,
p99, max) in both phases.

Prints figures, never passes or fails. Usage: python bench/backfill.py [--slots N]
[--interval S] [--probe-every S] [--idle-seconds S] [--batch N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, text

from jobengine import guard
from jobengine.backfills import service
from jobengine.backfills.model import BackfillSpec, CadenceSpec, JobTemplate
from jobengine.domain.job import NewJob
from jobengine.embedded import EmbeddedPostgres
from jobengine.execution import Executor
from jobengine.maintenance.backfiller import BATCH
from jobengine.maintenance.report import TickReport
from jobengine.maintenance.service import Reaper
from jobengine.store import migrate
from jobengine.store.database import make_engine, transaction
from jobengine.store.jobs_repository import DispatchRef


class NoBroker:
    def publish(self, ref: DispatchRef, countdown: float | None = None) -> None:
        pass

    def publish_chunk(self, refs: Sequence[DispatchRef]) -> None:
        pass


class TimedReaper(Reaper):
    """The leader as it runs, with each whole tick timed."""

    ticks: list[float]

    def tick(self) -> TickReport:
        began = time.perf_counter()
        try:
            return super().tick()
        finally:
            self.ticks.append(time.perf_counter() - began)


def quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def probe(engine: Engine, lead_seconds: float) -> int:
    due = datetime.now(UTC) + timedelta(seconds=lead_seconds)
    with transaction(engine) as conn:
        job = guard.create_job(
            conn,
            NewJob(type="noop", payload={"due": due.isoformat()}, not_before=due),
            schedule=False,
        )
    assert job is not None
    return job.id


def probes_until(engine: Engine, every: float, done: Callable[[], bool]) -> list[int]:
    """Probe jobs, each due ``every`` seconds after its creation, one every ``every`` seconds
    until ``done()``."""
    ids: list[int] = []
    while not done():
        ids.append(probe(engine, every))
        time.sleep(every)  # the probes' own pace, not synchronisation
    return ids


def promoted(engine: Engine, ids: list[int], timeout: float = 30.0) -> None:
    """Let the leader promote the last probes (they came due as the backfill ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting: int = conn.execute(
                text("SELECT count(*) FROM jobs WHERE id = ANY(:ids) AND scheduled_at IS NULL"),
                {"ids": ids},
            ).scalar_one()
        if not waiting:
            return
        time.sleep(0.05)  # polling the outcome, as a user would


def latencies_ms(engine: Engine, ids: list[int]) -> list[float]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT extract(epoch FROM scheduled_at - (payload->>'due')::timestamptz) * 1000 "
                "FROM jobs "
                "WHERE id = ANY(:ids) AND scheduled_at IS NOT NULL"
            ),
            {"ids": ids},
        )
        return sorted(float(r[0]) for r in rows)


def summary(prefix: str, values: list[float]) -> dict[str, float]:
    return {
        f"{prefix}_p50": round(quantile(values, 0.5), 1),
        f"{prefix}_p99": round(quantile(values, 0.99), 1),
        f"{prefix}_max": round(max(values, default=0.0), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slots", type=int, default=100_000)
    parser.add_argument("--interval", type=float, default=1.0, help="the leader's tick interval")
    parser.add_argument("--probe-every", type=float, default=0.2)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=BATCH, help="slots per tick, at most")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobengine-bench-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        url = pg.start()
        engine = make_engine(url)
        try:
            migrate.upgrade(engine)
            reaper = TimedReaper(
                engine,
                NoBroker(),
                Executor(engine, lease_ttl_seconds=30),
                name="bench-leader",
                redispatch_after_seconds=600,
                dispatch_grace_seconds=0,
            )
            reaper.ticks = []
            reaper.backfiller.batch = args.batch
            stop = threading.Event()
            leader = threading.Thread(target=reaper.run, args=(stop, args.interval), daemon=True)
            leader.start()
            quiet_until = time.monotonic() + args.idle_seconds
            idle_ids = probes_until(
                engine, args.probe_every, lambda: time.monotonic() > quiet_until
            )
            promoted(engine, idle_ids)
            idle = latencies_ms(engine, idle_ids)
            reaper.ticks.clear()

            start = datetime(2026, 1, 1, tzinfo=UTC)
            spec = BackfillSpec(
                tenant_id="bench",
                project_id="p",
                source="events",
                cadence=CadenceSpec(cron=None, interval_seconds=60, zone="UTC"),
                start=start,
                end=start + timedelta(minutes=args.slots),
                job=JobTemplate(type="noop"),
            )
            began = time.perf_counter()
            with transaction(engine) as conn:
                made = service.create(conn, spec, dry_run=False, created_by="bench").backfill
            assert made is not None
            created = threading.Event()

            def watch() -> None:
                while True:
                    with engine.connect() as conn:
                        state: str = conn.execute(
                            text("SELECT status FROM backfills WHERE id = :id"), {"id": made.id}
                        ).scalar_one()
                    if state != "creating":
                        created.set()
                        return
                    time.sleep(0.05)  # polling the outcome, as a user would

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            busy_ids = probes_until(engine, args.probe_every, created.is_set)
            seconds = time.perf_counter() - began
            promoted(engine, busy_ids)
            busy = latencies_ms(engine, busy_ids)
            stop.set()
            leader.join(30)
            ticks = list(reaper.ticks)
            batches = list(reaper.backfiller.tick_seconds)
            figures = {
                "bench": "backfill",
                "slots": args.slots,
                "batch": args.batch,
                "seconds": round(seconds, 2),
                "slots_per_s": round(args.slots / seconds, 1),
                "ticks": len(ticks),
                "tick_ms_max": round(max(ticks, default=0.0) * 1000, 1),
                "tick_ms_p99": round(quantile(ticks, 0.99) * 1000, 1),
                "backfiller_ms_max": round(max(batches, default=0.0) * 1000, 1),
                "backfiller_ms_p99": round(quantile(batches, 0.99) * 1000, 1),
                **summary("promotion_ms_idle", idle),
                **summary("promotion_ms_backfilling", busy),
                "probes_idle": len(idle),
                "probes_backfilling": len(busy),
            }
            idle_p99 = max(figures["promotion_ms_idle_p99"], 1.0)
            figures["promotion_p99_ratio"] = round(
                figures["promotion_ms_backfilling_p99"] / idle_p99, 2
            )
            print(json.dumps(figures))
        finally:
            engine.dispose()
            pg.stop()


if __name__ == "__main__":
    main()
