"""Dead letters on a real fleet: final failures land in the queue whole, a bulk replay after
the cause is fixed runs every job once, poison messages are dead-lettered, not lost."""

from __future__ import annotations

from kombu import Exchange, Producer, Queue
from sqlalchemy import text

from jobengine import guard
from jobengine.dead_letters import DeadLetters, ReplayOptions
from jobengine.domain.dead_letter import DeadLetterReason, DeadLetterStatus
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.fleet import publisher_app
from jobengine.job_types import JobTypeRegistry, JobTypeSpec
from jobengine.job_types import registry as default_registry
from jobengine.producer import submit_jobs
from jobengine.store.database import transaction
from jobengine.store.dead_letter_repository import DeadLetterFilter
from tests.fleet import handlers  # noqa: F401  (registers the test job types here too)
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus


def open_entries(fleet: Fleet, job_type: str) -> int:
    with fleet.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM dead_letters WHERE type = :t AND status = 'open'"),
                {"t": job_type},
            ).scalar_one()
        )


def test_job_failing_every_attempt_lands_in_the_dead_letter_queue_with_four_attempts(
    fleet: Fleet,
) -> None:
    fleet.start_worker("w1", concurrency=2)
    [job] = submit_jobs(fleet.engine, fleet.publisher(), [NewJob(type="always_fails")])
    wait_until(lambda: fleet.job(job.id).status is S.FAILED or None, 60, "final failure")

    service = DeadLetters(fleet.engine)
    entry = service.get(service.id_for_job(job.id))
    assert entry.reason is DeadLetterReason.RETRIES_EXHAUSTED
    assert entry.status is DeadLetterStatus.OPEN
    assert entry.attempts == 4
    failures = [t for t in entry.timeline if t["to_status"] == "failed"]
    assert [f["attempt"] for f in failures] == [1, 2, 3, 4]
    assert [f["details"]["error"]["message"] for f in failures] == [
        f"always fails (attempt {n})" for n in (1, 2, 3, 4)
    ]
    assert entry.error_class == "builtins.RuntimeError"
    assert entry.error_message == "always fails (attempt 4)"
    assert "RuntimeError" in (entry.traceback or "")
    assert [e[1] for e in fleet.effects(job.id)] == [1, 2, 3, 4]


def test_bulk_replay_of_500_dead_letters_after_the_fix_completes_each_job_once(
    fleet: Fleet,
) -> None:
    with fleet.engine.begin() as conn:
        conn.execute(text("INSERT INTO test_flags VALUES ('broken')"))
    fleet.start_worker("w1", concurrency=2)
    fleet.start_reaper("r1")
    jobs = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="broken_while_flagged", payload={"n": n}) for n in range(500)],
    )
    wait_until(lambda: open_entries(fleet, "broken_while_flagged") == 500, 180, "500 dead")

    with fleet.engine.begin() as conn:
        conn.execute(text("DELETE FROM test_flags WHERE name = 'broken'"))  # the fix
    service = DeadLetters(fleet.engine, publisher=fleet.publisher())
    flt = DeadLetterFilter(types=["broken_while_flagged"])
    dry = service.replay_many(flt, ReplayOptions(actor="ops"), dry_run=True)
    assert len(dry.selected) == 500
    report = service.replay_many(flt, ReplayOptions(actor="ops", reason="downstream fixed"))
    assert len(report.replayed) == 500 and report.skipped == []

    def all_completed() -> bool:
        with fleet.engine.connect() as conn:
            done = conn.execute(
                text("SELECT count(*) FROM jobs WHERE id = ANY(:ids) AND status = 'completed'"),
                {"ids": [j.id for j in jobs]},
            ).scalar_one()
        return bool(done == 500)

    wait_until(all_completed, 240, "500 replayed jobs completed")
    ran = [e for e in fleet.effects() if e[2] == "ran"]
    assert sorted(e[0] for e in ran) == sorted(j.id for j in jobs)  # each job ran once
    with fleet.engine.connect() as conn:
        replays = conn.execute(text("SELECT count(*) FROM dead_letter_replays")).scalar_one()
        still_open = conn.execute(
            text("SELECT count(*) FROM dead_letters WHERE status = 'open'")
        ).scalar_one()
    assert (replays, still_open) == (500, 0)


def test_a_message_for_a_type_not_in_the_catalogue_is_dead_lettered_as_poison_once(
    fleet: Fleet,
) -> None:
    fleet.start_worker("w1")
    types = JobTypeRegistry()
    for name in default_registry.names():
        types.register(default_registry.get(name))
    types.register(JobTypeSpec("vanished"))  # known to this test only: not catalogued
    with transaction(fleet.engine) as conn:
        job = guard.create_job(conn, NewJob(type="vanished"), schedule=True, dispatching=True)
    assert job is not None
    # Routed by type, its message would wait in jobs.vanished; one that reaches a worker's
    # inbox anyway (a plain producer, an old publisher) is poison, since no one knows the type.
    publisher_app(fleet.settings(), fleet.broker_url).send_task(
        "jobs.vanished", args=[job.id], task_id=f"job-{job.id}-1", queue="default"
    )

    wait_until(lambda: fleet.job(job.id).status is S.FAILED or None, 60, "poisoned")
    service = DeadLetters(fleet.engine, types=types)
    entry = service.get(service.id_for_job(job.id))
    assert entry.reason is DeadLetterReason.POISON
    assert entry.error_code == "POISON_MESSAGE"
    assert "no handler for job type 'vanished'" in (entry.error_message or "")
    claims = [h for h in fleet.history(job.id) if h.to_status is S.CLAIMED]
    assert len(claims) == 1 and fleet.job(job.id).attempt == 1


def _publish_raw(fleet: Fleet, task_id: str, body: bytes) -> None:
    """A message Celery cannot decode: its headers name a job task, its body is not JSON."""
    exchange = Exchange("default", type="direct")
    app = publisher_app(fleet.settings(), fleet.broker_url)
    with app.connection_for_write() as conn:
        Producer(conn).publish(
            body,
            exchange=exchange,
            routing_key="default",
            declare=[Queue("default", exchange, routing_key="default")],
            content_type="application/json",
            content_encoding="utf-8",
            headers={"lang": "py", "task": "jobs.effect", "id": task_id},
        )


def test_undecodable_messages_are_dead_lettered_as_poison_and_kept(fleet: Fleet) -> None:
    with transaction(fleet.engine) as conn:
        job = guard.create_job(conn, NewJob(type="effect"), schedule=True, dispatching=True)
    assert job is not None
    fleet.start_worker("w1")
    _publish_raw(fleet, f"job-{job.id}-1", b"{not json")
    _publish_raw(fleet, "plain-producer-7", b"[1, 2")

    wait_until(lambda: fleet.job(job.id).status is S.FAILED or None, 60, "poisoned")
    service = DeadLetters(fleet.engine)
    entry = service.get(service.id_for_job(job.id))
    assert entry.reason is DeadLetterReason.POISON
    assert "could not be decoded" in (entry.error_message or "")

    def adopted() -> list[int]:
        with fleet.engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT id FROM jobs WHERE idempotency_key = 'celery:plain-producer-7' "
                        "AND status = 'failed'"
                    )
                ).scalars()
            )

    [kept] = wait_until(adopted, 60, "the plain message recorded")
    kept_entry = service.get(service.id_for_job(kept))
    assert kept_entry.reason is DeadLetterReason.POISON
    assert kept_entry.payload["body"] == "[1, 2"
    assert fleet.effects() == []  # no handler ran for either message


def test_a_stored_payload_its_handler_cannot_decode_is_poison_and_a_good_one_runs(
    fleet: Fleet,
) -> None:
    fleet.start_worker("w1")
    [good] = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="typed_order", payload={"order_id": 7, "quantity": 2})],
    )
    # Stored before the handler declared its shape (submission would refuse it now).
    with transaction(fleet.engine) as conn:
        stale = guard.create_job(
            conn, NewJob(type="typed_order", payload={"order_id": "seven"}), schedule=True
        )
    assert stale is not None
    fleet.start_reaper("r1")  # publishes the job stored without a message

    wait_until(lambda: fleet.job(good.id).status is S.COMPLETED or None, 60, "good one ran")
    assert fleet.job(good.id).result == {"order_id": 7, "quantity": 2}
    wait_until(lambda: fleet.job(stale.id).status is S.FAILED or None, 60, "poisoned")
    service = DeadLetters(fleet.engine)
    entry = service.get(service.id_for_job(stale.id))
    assert entry.reason is DeadLetterReason.POISON
    assert "does not fit Order: order_id" in (entry.error_message or "")
    assert fleet.job(stale.id).attempt == 1  # never retried
    assert [e[0] for e in fleet.effects()] == [good.id]  # the handler never saw the bad one
