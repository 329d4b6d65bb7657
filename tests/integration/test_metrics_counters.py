"""The transition counters ``/metrics`` reports are folded from the outbox, and still say what
a count over all of ``job_history`` said: no event lost, none counted twice."""

from __future__ import annotations

import threading

from sqlalchemy import Engine, text

from jobengine import guard
from jobengine.domain.status import JobStatus
from jobengine.store import migrate
from jobengine.store.database import make_engine, transaction
from jobengine.store.metrics_repository import MetricsRepository, fold_all, fold_page
from tests.integration.history_support import (
    Counts,
    history_truth,
    jobs_truth,
    new_job,
    scrape,
    scraped_jobs,
    scraped_steps,
    workload,
)


def folded(engine: Engine) -> Counts:
    with transaction(engine) as conn:
        totals = MetricsRepository(conn).totals()
    return {(s.from_status, s.to_status): (s.n, s.lease_expired) for s in totals.steps}


def test_scraped_counters_equal_a_count_over_job_history_after_retries_and_lease_expiries(
    engine: Engine,
) -> None:
    workload(engine, 3)
    got = scrape(engine)
    truth = history_truth(engine)
    assert scraped_steps(got) == {step: n for step, (n, _) in truth.items()}
    assert got[("jobengine_lease_expiries_total", ())] == sum(le for _, le in truth.values()) == 6
    assert got[("jobengine_retries_total", ())] == truth[("failed", "scheduled")][0] == 6
    assert scraped_jobs(got) == jobs_truth(engine)


def test_a_second_scrape_with_nothing_new_reports_what_the_first_did(engine: Engine) -> None:
    workload(engine, 2)
    first = scrape(engine)
    second = scrape(engine)
    counted = {  # everything the engine reports but the age of the oldest waiting job
        k: v for k, v in first.items() if k[0].startswith("jobengine_") and "oldest" not in k[0]
    }
    assert len(counted) > 20
    assert {k: second[k] for k in counted} == counted


def test_two_folds_running_at_once_never_count_an_event_twice(engine: Engine) -> None:
    workload(engine, 20)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def fold() -> None:
        try:
            start.wait(10)
            fold_all(engine, limit=7)  # many small pages, so the folds interleave
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fold) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert folded(engine) == history_truth(engine)


def test_an_event_of_a_transaction_open_during_a_fold_is_counted_by_a_later_fold(
    engine: Engine,
) -> None:
    fold_all(engine)
    with engine.connect() as held:
        held_tx = held.begin()
        held_job = new_job(held)  # written, not committed: its event in flight
        with transaction(engine) as conn:
            later_job = new_job(conn)  # committed after the held one began writing
        fold_all(engine)
        assert folded(engine) == {}, "nothing behind an open transaction may be folded yet"
        held_tx.commit()
    fold_all(engine)
    assert (
        folded(engine)
        == history_truth(engine)
        == {
            ("", "scheduled"): (2, 0),
        }
    )
    assert held_job != later_job


def test_a_fold_reads_at_most_its_page_and_the_next_fold_goes_on_from_there(
    engine: Engine,
) -> None:
    with transaction(engine) as conn:
        for _ in range(10):
            new_job(conn)  # ten events
    assert fold_page(engine, limit=4) == 4
    assert sum(n for n, _ in folded(engine).values()) == 4
    assert fold_all(engine, limit=4) == 6
    assert folded(engine) == history_truth(engine)


def test_final_states_are_counted_from_the_totals_and_live_ones_from_the_jobs(
    engine: Engine,
) -> None:
    kinds = workload(engine, 2)
    with transaction(engine) as conn:
        pending = guard.create_job(
            conn,
            guard.NewJob(type="noop", not_before=conn.execute(text("SELECT now()")).scalar_one()),
            schedule=False,
        )
        guard.transition(conn, kinds["failed"][0], JobStatus.SCHEDULED, reason="replay")
    assert pending is not None
    assert scraped_jobs(scrape(engine)) == jobs_truth(engine)


def test_an_upgraded_database_keeps_the_counts_its_history_holds(empty_db_url: str) -> None:
    eng = make_engine(empty_db_url)
    try:
        # Today's guard writes the history; stepping the schema back to 0008 (before the
        # counters) leaves it as a database of that release would hold it, and the upgrade
        # must fold it. Writing it at 0008 would need that release's statements.
        migrate.upgrade(eng, "head")
        workload(eng, 2)
        truth = history_truth(eng)
        migrate.downgrade(eng, "0008")
        assert history_truth(eng) == truth
        migrate.upgrade(eng, "head")
        assert folded(eng) == truth
        assert fold_all(eng) == 0, "the migration's cursor already stands past every event"
        workload(eng, 1)
        fold_all(eng)
        assert folded(eng) == history_truth(eng)
    finally:
        eng.dispose()
