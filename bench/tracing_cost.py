"""What tracing costs: jobs submitted per second and microseconds per attempt span, with
tracing off (no endpoint: the API's no-op provider) and on (the SDK, a batch processor and the
OTLP/HTTP exporter sending to a receiver on loopback), side by side in one run.

Each mode runs in a fresh process (a tracer provider is set once per process), rounds
alternating off/on, on one private Postgres emptied before each run; the ratio is the median of
the rounds' on/off ratios:

* ``submit``: ``enqueue`` of one job per transaction, the path where tracing adds the most (a
  producer span, and one ``set_config`` round trip for the job's ``traceparent``);
* ``attempt_span``: the consumer span a worker opens around each attempt (``tracing.processing``
  with the job's stored ``traceparent``), alone, so its cost is not lost in a handler's noise;
  beside it an empty span of the same provider, the least any tracing of an attempt costs.

Prints figures, never passes or fails; the last line is JSON.

Usage: python bench/tracing_cost.py [--jobs N] [--spans N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
from opentelemetry import trace
from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.transitions import bench_database, libpq_url  # noqa: E402
from config.logging import configure_logging  # noqa: E402
from jobengine import tracing  # noqa: E402
from jobengine.enqueue import enqueue  # noqa: E402
from jobengine.services import masked_url, upgrade_database  # noqa: E402
from jobengine.store.database import make_engine  # noqa: E402
from tests.otlp_receiver import OtlpReceiver  # noqa: E402

OFF, ON = "off", "on"
PRODUCER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def child(url: str, jobs: int, spans: int) -> dict[str, float]:
    """One mode's figures, in this process: tracing is whatever the environment says."""
    configure_logging("WARNING")
    on = tracing.configure("jobengine-bench")
    engine = make_engine(url, pool_size=1, max_overflow=0)

    def one(n: int) -> None:
        with Session(engine) as session:
            enqueue(session, "noop", {"n": n}, tenant_id="bench", project_id="bench")
            session.commit()

    one(-1)  # warm-up: catalogue, connection
    started = time.perf_counter()
    for n in range(jobs):
        one(n)
    submit_rate = jobs / (time.perf_counter() - started)
    started = time.perf_counter()
    for n in range(spans):
        with tracing.processing(
            queue="default", job_type="noop", job_id=n, attempt=1, traceparent=PRODUCER
        ) as span:
            span.set_attribute("jobengine.outcome", "completed")
    span_us = (time.perf_counter() - started) / spans * 1e6
    bare = trace.get_tracer("bench")  # the floor: an empty span of the same provider
    started = time.perf_counter()
    for _ in range(spans):
        with bare.start_as_current_span("bare"):
            pass
    bare_us = (time.perf_counter() - started) / spans * 1e6
    tracing.flush()
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("SELECT count(traceparent) FROM jobs").fetchone()
    engine.dispose()
    return {
        "tracing": float(on),
        "submit_jobs_per_s": submit_rate,
        "attempt_span_us": span_us,
        "bare_span_us": bare_us,
        "traced_jobs": float(row[0] if row else 0),
    }


def _reset(url: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("TRUNCATE jobs, job_history, job_events CASCADE")
        conn.execute("VACUUM ANALYZE jobs")


def run_mode(
    url: str, mode: str, receiver: OtlpReceiver, jobs: int, spans: int
) -> dict[str, float]:
    _reset(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if mode == ON:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
    argv = [sys.executable, __file__, "--child", url, "--jobs", str(jobs), "--spans", str(spans)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, timeout=600)
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=2000, help="jobs submitted per run")
    parser.add_argument("--spans", type=int, default=20000, help="attempt spans per run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per mode")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.jobs, args.spans)))
        return 0
    configure_logging("WARNING")
    runs: dict[str, list[dict[str, float]]] = {OFF: [], ON: []}
    with bench_database() as url, OtlpReceiver() as receiver:
        upgrade_database(url, "head")
        print(f"database: {masked_url(url)}")
        print(f"each run: {args.jobs} jobs enqueued one per transaction, {args.spans} spans")
        for round_ in range(args.rounds):
            for mode in (OFF, ON) if round_ % 2 == 0 else (ON, OFF):
                got = run_mode(url, mode, receiver, args.jobs, args.spans)
                runs[mode].append(got)
                print(
                    f"  round={round_ + 1} tracing {mode:3s} submit {got['submit_jobs_per_s']:8.1f}"
                    f" jobs/s  attempt span {got['attempt_span_us']:6.2f} us"
                    f" (an empty span {got['bare_span_us']:6.2f} us)"
                    f"  jobs with a traceparent {int(got['traced_jobs'])}"
                )
        exported = len(receiver.spans)

    def mean(mode: str, key: str) -> float:
        return sum(r[key] for r in runs[mode]) / len(runs[mode])

    off_rate, on_rate = mean(OFF, "submit_jobs_per_s"), mean(ON, "submit_jobs_per_s")
    # Each round's off and on ran back to back: the median of their ratios resists a machine
    # whose load changes between rounds better than the ratio of the means.
    ratios = sorted(
        on["submit_jobs_per_s"] / off["submit_jobs_per_s"]
        for on, off in zip(runs[ON], runs[OFF], strict=True)
    )
    median_ratio = ratios[len(ratios) // 2]
    result = {
        "bench": "tracing_cost",
        "jobs": args.jobs,
        "spans": args.spans,
        "submit_off_jobs_per_s": round(off_rate, 1),
        "submit_on_jobs_per_s": round(on_rate, 1),
        "submit_on_ratio": round(median_ratio, 3),
        "attempt_span_off_us": round(mean(OFF, "attempt_span_us"), 2),
        "attempt_span_on_us": round(mean(ON, "attempt_span_us"), 2),
        "bare_sdk_span_on_us": round(mean(ON, "bare_span_us"), 2),
        "spans_exported": exported,
    }
    print(
        f"submit: {off_rate:.1f} jobs/s off, {on_rate:.1f} on (median ratio {median_ratio:.3f}); "
        f"attempt span: {result['attempt_span_off_us']} us off,"
        f" {result['attempt_span_on_us']} us on"
    )
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
