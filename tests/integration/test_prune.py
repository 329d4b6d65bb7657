"""Retention deletes only what is final and old, in batches, never an uncounted event, and
leaves the counters as they were."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from jobengine import guard
from jobengine.domain.run import RunJobSpec, RunSpec
from jobengine.domain.status import JobStatus
from jobengine.execution import Executor
from jobengine.maintenance import Reaper
from jobengine.maintenance.leadership import Leadership
from jobengine.maintenance.retention import Retention, RetentionPolicy
from jobengine.runs import service
from jobengine.store.database import make_engine, transaction
from jobengine.store.retention import PruneReport, prune
from tests.integration.cli_support import invoke
from tests.integration.history_support import (
    age,
    complete,
    history_truth,
    jobs_truth,
    new_job,
    rows_of,
    scrape,
    scraped_jobs,
    scraped_steps,
    start,
    workload,
)
from tests.integration.test_leadership import RecordingBroker

WEEK_AGO = timedelta(days=7)
GONE = {"jobs": 0, "job_history": 0, "job_events": 0, "dead_letters": 0}


def cut_off() -> datetime:
    return datetime.now(UTC) - WEEK_AGO


def discard_dead_letters(engine: Engine, job_ids: list[int]) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE dead_letters SET status = 'discarded' WHERE job_id = ANY(:ids)"),
            {"ids": job_ids},
        )


def test_prune_removes_only_final_jobs_older_than_the_cut_off_with_their_rows(
    engine: Engine,
) -> None:
    old = workload(engine, 2)
    recent = workload(engine, 1)
    discard_dead_letters(engine, old["failed"][1:])  # one old failure stays open
    age(engine, [i for ids in old.values() for i in ids], days=30)
    before = {kind: rows_of(engine, ids) for kind, ids in old.items()}

    report = prune(engine, before=cut_off(), batch=1000)

    for kind in ("completed", "retried", "cancelled"):
        assert rows_of(engine, old[kind]) == GONE, kind
    assert rows_of(engine, old["failed"][1:]) == GONE
    open_failure = rows_of(engine, old["failed"][:1])
    assert open_failure["jobs"] == 1 and open_failure["dead_letters"] == 1
    assert open_failure["job_history"] == before["failed"]["job_history"] // 2
    for kind in ("expired", "handed_back", "running"):  # not final: the jobs and history stay
        kept = rows_of(engine, old[kind])
        assert (kept["jobs"], kept["job_history"]) == (2, before[kind]["job_history"]), kind
        assert kept["job_events"] == 0, "old events of kept jobs go with the outbox's age"
    for kind, ids in recent.items():
        assert rows_of(engine, ids)["jobs"] == 1, kind
    assert report.removed["jobs"] == 2 * 3 + 1
    assert report.removed["dead_letters"] == 1


def test_prune_keeps_an_old_event_that_no_fold_has_counted_and_its_job(engine: Engine) -> None:
    with engine.connect() as held:
        held_tx = held.begin()
        new_job(held)  # holds every later event back from the folds
        with transaction(engine) as conn:
            job_id = new_job(conn)
            complete(conn, job_id, start(conn, job_id))
        age(engine, [job_id], days=30)
        kept = rows_of(engine, [job_id])
        prune(engine, before=cut_off(), batch=100)
        assert rows_of(engine, [job_id]) == kept
        held_tx.commit()
    prune(engine, before=cut_off(), batch=100)
    assert rows_of(engine, [job_id]) == GONE


def test_counters_after_a_prune_equal_the_counters_before_it(engine: Engine) -> None:
    kinds = workload(engine, 3)
    discard_dead_letters(engine, kinds["failed"])
    age(engine, [i for ids in kinds.values() for i in ids][::2], days=30)
    before = scrape(engine)
    report = prune(engine, before=cut_off(), batch=4)
    assert report.removed["jobs"] > 0 and report.batches > 3
    after = scrape(engine)
    assert scraped_steps(after) == scraped_steps(before)
    assert {k: v for k, v in after.items() if "lease_expiries" in k[0] or "retries" in k[0]} == {
        k: v for k, v in before.items() if "lease_expiries" in k[0] or "retries" in k[0]
    }
    assert scraped_jobs(after) == jobs_truth(engine)
    assert scraped_steps(after) != {n: c for n, (c, _) in history_truth(engine).items()}


def test_a_dry_run_removes_nothing_and_reports_what_the_real_run_then_removes(
    engine: Engine,
) -> None:
    kinds = workload(engine, 3)
    discard_dead_letters(engine, kinds["failed"])
    age(engine, [i for ids in kinds.values() for i in ids], days=30)
    with engine.begin() as conn:  # an old dead letter replayed since: only the entry goes
        replayed = kinds["failed"][0]
        guard.transition(conn, replayed, JobStatus.SCHEDULED, reason="replay")
        conn.execute(
            text(
                "UPDATE dead_letters SET status = 'replayed', status_changed_at = now() - "
                "interval '30 days' WHERE job_id = :id"
            ),
            {"id": replayed},
        )
    all_ids = [i for ids in kinds.values() for i in ids]
    untouched = rows_of(engine, all_ids)

    dry = prune(engine, before=cut_off(), batch=3, dry_run=True)
    assert rows_of(engine, all_ids) == untouched
    real = prune(engine, before=cut_off(), batch=3)
    assert dry.removed == real.removed
    assert real.removed == {
        table: untouched[table] - left for table, left in rows_of(engine, all_ids).items()
    }
    assert real.removed["dead_letters"] == 3


def test_the_leader_folds_every_tick_and_prunes_only_when_told_to(engine: Engine) -> None:
    kinds = workload(engine, 1)
    age(engine, kinds["completed"], days=30)
    leadership = Leadership(engine, "reaper-a", 15)
    assert leadership.acquire()
    Retention(engine, leadership, RetentionPolicy()).run()
    assert rows_of(engine, kinds["completed"])["jobs"] == 1
    with engine.connect() as conn:
        cursor = conn.execute(text("SELECT event_id FROM transition_totals_cursor")).scalar_one()
        assert cursor == conn.execute(text("SELECT max(id) FROM job_events")).scalar_one()
    policy = RetentionPolicy(prune_after_seconds=WEEK_AGO.total_seconds(), batch_size=10)
    Retention(engine, leadership, policy).run()
    assert rows_of(engine, kinds["completed"]) == GONE


def test_a_reaper_tick_prunes_when_its_retention_policy_says_so(engine: Engine) -> None:
    kinds = workload(engine, 1)
    age(engine, kinds["completed"], days=30)
    policy = RetentionPolicy(prune_after_seconds=WEEK_AGO.total_seconds())
    reaper = Reaper(
        engine,
        RecordingBroker(),
        Executor(engine, lease_ttl_seconds=30),
        name="reaper-a",
        redispatch_after_seconds=600,
        dispatch_grace_seconds=0,
        retention=policy,
    )
    assert reaper.tick().leader
    assert rows_of(engine, kinds["completed"]) == GONE
    assert rows_of(engine, kinds["cancelled"])["jobs"] == 1, "finished recently: kept"


def test_a_leader_that_lost_its_lease_deletes_nothing(engine: Engine) -> None:
    kinds = workload(engine, 1)
    age(engine, kinds["completed"], days=30)
    leadership = Leadership(engine, "reaper-a", 15)
    assert leadership.acquire()
    with engine.begin() as conn:  # another reaper took over
        conn.execute(text("UPDATE leadership SET holder = 'reaper-b', term = term + 1"))
    policy = RetentionPolicy(prune_after_seconds=WEEK_AGO.total_seconds())
    with pytest.raises(Exception, match="reaper-a"):
        Retention(engine, leadership, policy).run()
    assert rows_of(engine, kinds["completed"])["jobs"] == 1


def test_db_prune_prints_what_it_removed_per_table(
    db_url: str, engine: Engine, closed_broker: str, quiet_cli: None
) -> None:
    kinds = workload(engine, 2)
    age(engine, kinds["completed"], days=30)
    code, out, err = invoke(db_url, closed_broker, "db", "prune", "--dry-run", "--json")
    assert code == 0, err
    dry = json.loads(out)
    assert dry["dryRun"] is True and dry["removed"]["jobs"] == 2
    assert rows_of(engine, kinds["completed"])["jobs"] == 2
    code, out, err = invoke(db_url, closed_broker, "db", "prune", "--older-than", "7d")
    assert code == 0, err
    assert out.splitlines() == [
        f"removed {dry['removed'][table]:>10} {table}"
        for table in ("jobs", "job_history", "job_events", "dead_letters")
    ]
    assert rows_of(engine, kinds["completed"]) == GONE


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--older-than", "0s"], "--older-than"),
        (["--older-than", "0d"], "--older-than"),
        (["--older-than", "a week"], "--older-than"),
        (["--older-than", "7"], "--older-than"),
        (["--batch", "0"], "--batch"),
        (["--batch", "many"], "--batch"),
    ],
)
def test_db_prune_refuses_a_bad_flag_with_exit_2_naming_it(
    db_url: str, engine: Engine, closed_broker: str, quiet_cli: None, args: list[str], flag: str
) -> None:
    kinds = workload(engine, 1)
    age(engine, kinds["completed"], days=30)
    code, out, err = invoke(db_url, closed_broker, "db", "prune", *args)
    assert code == 2, (out, err)
    assert flag in err and "Traceback" not in out + err
    assert rows_of(engine, kinds["completed"])["jobs"] == 1


def test_a_prune_with_nothing_old_removes_nothing_in_one_batch_per_step(engine: Engine) -> None:
    report = prune(engine, before=cut_off(), batch=10)
    assert report == PruneReport(before=report.before, dry_run=False, batches=3)


def test_prune_deletes_the_edges_naming_a_pruned_job_and_keeps_its_run_and_open_child(
    db_url: str, engine: Engine
) -> None:
    """Edges have no foreign keys to cascade (migration 0020): retention deletes them itself,
    as the parent's and as the child's, and what is left of the run stays whole."""
    spec = RunSpec(
        "t1",
        "p1",
        "chain",
        tuple(RunJobSpec(key=k, type="noop") for k in "abc"),
        (("a", "b"), ("b", "c")),
    )
    with transaction(engine) as conn:
        run, born = service.submit_run(conn, spec, actor="test")
    a, b, c = (job.id for job in born)
    worker_engine = make_engine(db_url, pool_size=2)
    try:
        executor = Executor(worker_engine, lease_ttl_seconds=30)
        for job_id in (a, b):
            claimed = executor.claim(job_id, "w1")
            assert claimed is not None
            assert executor.complete(claimed, None) is not None
    finally:
        worker_engine.dispose()
    age(engine, [a, b], days=30)

    report = prune(engine, before=cut_off(), batch=1000)

    assert report.removed["jobs"] == 2
    with engine.connect() as conn:
        edges = conn.execute(text("SELECT parent_id, child_id FROM job_edges")).all()
        left = conn.execute(text("SELECT id, status FROM jobs WHERE run_id = :r"), {"r": run.id})
        assert edges == []
        assert [(row.id, row.status) for row in left] == [(c, JobStatus.SCHEDULED.value)]
        assert service.get_run(conn, run.id).id == run.id
