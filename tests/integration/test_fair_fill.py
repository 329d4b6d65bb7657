"""The leader's fair fill and cap admissions, run in-process against a recording publisher:
round-robin weighted by tenant, never past the window or the cap, counting what is in flight."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Engine, text

from jobengine import guard
from jobengine.domain.job import NewJob
from jobengine.quotas.book import Quota, QuotaRepository
from jobengine.quotas.cap_admissions import CapAdmissions
from jobengine.quotas.fair import FairFill
from jobengine.store.database import transaction
from tests.api.conftest import RecordingPublisher


@dataclass
class Leading:
    """All the fill asks of leadership: the term it acts in."""

    term: int | None = 1


def backlog(engine: Engine, tenant: str, n: int, queue: str = "shared") -> None:
    with transaction(engine) as conn:
        guard.create_jobs(conn, [NewJob(type="noop", tenant_id=tenant, queue=queue)] * n)


def tenants_of(engine: Engine, ids: list[int]) -> Counter[str]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT tenant_id FROM jobs WHERE id = ANY(:ids)"), {"ids": ids})
        return Counter(r[0] for r in rows)


def start(engine: Engine, ids: list[int]) -> None:
    """As a claim would: these jobs leave the broker for a worker."""
    with transaction(engine) as conn:
        conn.execute(
            text(
                "UPDATE jobs SET status = 'running', lease_owner = 'w',"
                " lease_expires_at = now() + interval '1 minute' WHERE id = ANY(:ids)"
            ),
            {"ids": ids},
        )


def test_a_fill_goes_round_robin_by_weight_and_never_past_the_window(engine: Engine) -> None:
    with transaction(engine) as conn:
        repo = QuotaRepository(conn)
        repo.set_fair_queue("shared", 6)
        repo.set(Quota("heavy", weight=2))
    backlog(engine, "heavy", 30)  # submitted first, so oldest
    backlog(engine, "light", 30)
    publisher = RecordingPublisher()
    fill = FairFill(engine, publisher, Leading())

    first = fill.run()
    assert tenants_of(engine, first) == Counter(heavy=4, light=2)
    assert fill.run() == []  # the window is full until workers take messages
    start(engine, first[:3])
    second = fill.run()
    assert len(second) == 3 and publisher.sent == first + second


def test_a_tenant_with_nothing_in_flight_goes_before_one_that_fills_the_window(
    engine: Engine,
) -> None:
    with transaction(engine) as conn:
        QuotaRepository(conn).set_fair_queue("shared", 4)
    backlog(engine, "big", 100)
    fill = FairFill(engine, RecordingPublisher(), Leading())
    start(engine, fill.run()[:1])  # a slot frees while big holds the other three
    backlog(engine, "small", 1)
    assert tenants_of(engine, fill.run()) == Counter(small=1)


def test_cap_admissions_publish_only_into_free_slots_and_fair_fills_skip_a_tenant_at_its_cap(
    engine: Engine,
) -> None:
    with transaction(engine) as conn:
        repo = QuotaRepository(conn)
        repo.set(Quota("capped", max_running=2))
        repo.set_fair_queue("shared", 8)
    backlog(engine, "capped", 10, queue="default")
    backlog(engine, "capped", 10, queue="shared")
    admissions = CapAdmissions(engine, RecordingPublisher(), Leading())
    admitted = admissions.run()
    assert len(admitted) == 2 and admissions.active
    assert admissions.run() == []  # both still in flight
    start(engine, admitted)
    assert admissions.run() == []  # both running: the cap is reached
    fill = FairFill(engine, RecordingPublisher(), Leading())
    assert fill.run() == []
