"""``jobengine jobs submit|list|history|retry`` against a real Postgres, in-process.

The broker is a closed loopback port: submitted and retried jobs stay scheduled for the
leader, and the commands must say so.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from jobengine.api.cursors import encode_cursor
from jobengine.domain.status import JobStatus
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import JobFilter, JobsRepository
from tests.integration.cli_support import dead_letter, invoke, one_line_error, parse

pytestmark = pytest.mark.usefixtures("quiet_cli")


def test_submit_prints_the_job_and_leaves_publishing_to_the_leader(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    code, out, err = invoke(
        db_url, closed_broker, "jobs", "submit", "noop", "--payload", '{"a": 1}', "--priority", "5"
    )
    assert code == 0, err
    [submitted, dispatch] = out.strip().splitlines()
    job_id = int(submitted.split()[2])
    assert submitted == f"submitted job {job_id} (noop): scheduled"
    assert dispatch.startswith(f"job {job_id} not published (broker unreachable")
    assert dispatch.endswith("the leader will publish it")
    with transaction(engine) as conn:
        job = JobsRepository(conn).get(job_id)
    assert (job.payload, job.priority, job.status) == ({"a": 1}, 5, JobStatus.SCHEDULED)
    assert job.dispatched_at is None  # unmarked, so the leader publishes it

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    pending = parse(
        *invoke(db_url, closed_broker, "jobs", "submit", "noop", "--not-before", later, "--json")
    )
    assert pending["job"]["status"] == "pending" and pending["published"] is False


def test_submit_with_an_idempotency_key_twice_returns_the_same_job(
    db_url: str, closed_broker: str
) -> None:
    args = ["jobs", "submit", "noop", "--idempotency-key", "k-1", "--tenant", "acme"]
    first = parse(*invoke(db_url, closed_broker, *args, "--json"))
    assert first["created"] is True and first["job"]["tenantId"] == "acme"
    code, out, err = invoke(db_url, closed_broker, *args)
    assert code == 0, err
    assert out.startswith(f"job {first['job']['id']} (noop) already exists under idempotency key")
    assert "nothing submitted" in out


def test_submit_refusals_are_one_line_errors(db_url: str, closed_broker: str) -> None:
    for args, says in (
        (["no-such-type"], "unknown job type 'no-such-type'"),
        (["noop", "--payload", "{oops"], "--payload is not valid JSON"),
        (["noop", "--not-before", "2030-01-01T00:00:00"], "has no timezone offset"),
        (["noop", "--priority", "12"], "priority 12 is out of range"),
    ):
        assert says in one_line_error(*invoke(db_url, closed_broker, "jobs", "submit", *args))
    listed = parse(*invoke(db_url, closed_broker, "jobs", "list", "--json"))
    assert listed["items"] == []  # nothing refused was written


def test_list_filters_and_pages_in_id_order(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    ids = [
        parse(*invoke(db_url, closed_broker, "jobs", "submit", job_type, "--json"))["job"]["id"]
        for job_type in ("noop", "sleep", "noop")
    ]
    _, failed_job = dead_letter(engine)

    page = parse(*invoke(db_url, closed_broker, "jobs", "list", "--limit", "2", "--json"))
    assert [j["id"] for j in page["items"]] == ids[:2]
    assert page["nextCursor"] == encode_cursor(ids[1])
    rest = parse(
        *invoke(db_url, closed_broker, "jobs", "list", "--cursor", page["nextCursor"], "--json")
    )
    assert [j["id"] for j in rest["items"]] == [ids[2], failed_job]
    old = parse(*invoke(db_url, closed_broker, "jobs", "list", "--cursor", str(ids[1]), "--json"))
    assert old["items"] == rest["items"], "a bare id is still taken for one release"

    noop = parse(
        *invoke(
            db_url,
            closed_broker,
            "jobs",
            "list",
            "--type",
            "noop",
            "--status",
            "scheduled",
            "--json",
        )
    )
    assert [j["id"] for j in noop["items"]] == [ids[0], ids[2]]
    failed = parse(*invoke(db_url, closed_broker, "jobs", "list", "--status", "failed", "--json"))
    assert [j["id"] for j in failed["items"]] == [failed_job]

    code, out, err = invoke(db_url, closed_broker, "jobs", "list", "--type", "sleep")
    assert code == 0, err
    assert "sleep" in out and "scheduled" in out and str(ids[1]) in out

    line = one_line_error(*invoke(db_url, closed_broker, "jobs", "list", "--status", "stuck"))
    assert "--status 'stuck'" in line and "pending, scheduled, claimed" in line
    line = one_line_error(*invoke(db_url, closed_broker, "jobs", "list", "--since", "monday"))
    assert "--since 'monday' is not an ISO 8601 time" in line


def test_history_shows_every_transition_with_the_error(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    _, job_id = dead_letter(engine)

    history = parse(*invoke(db_url, closed_broker, "jobs", "history", str(job_id), "--json"))
    assert history["status"] == "failed"
    steps = [(s["fromStatus"], s["toStatus"]) for s in history["items"]]
    assert steps[-2:] == [("claimed", "running"), ("running", "failed")]

    code, out, err = invoke(db_url, closed_broker, "jobs", "history", str(job_id))
    assert code == 0, err
    assert f"job {job_id} (noop): failed" in out
    assert "running → failed" in out and "bad input" in out

    line = one_line_error(*invoke(db_url, closed_broker, "jobs", "history", "424242"))
    assert "job 424242 does not exist" in line


def test_retry_replays_a_failed_job_once_and_refuses_others(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    entry_id, job_id = dead_letter(engine)

    code, out, err = invoke(
        db_url, closed_broker, "jobs", "retry", str(job_id), "--reason", "upstream fixed"
    )
    assert code == 0, err
    assert f"replayed dead letter {entry_id} (job {job_id})" in out
    assert "the leader will publish it" in out
    code, out, err = invoke(db_url, closed_broker, "jobs", "retry", str(job_id))
    assert code == 0, err
    assert out.strip() == f"dead letter {entry_id} was already replayed; nothing done"
    history = parse(*invoke(db_url, closed_broker, "jobs", "history", str(job_id), "--json"))
    replays = [s for s in history["items"] if s["reason"] == "upstream fixed"]
    assert [(s["fromStatus"], s["toStatus"]) for s in replays] == [("failed", "scheduled")]

    fresh = parse(*invoke(db_url, closed_broker, "jobs", "submit", "noop", "--json"))["job"]
    line = one_line_error(*invoke(db_url, closed_broker, "jobs", "retry", str(fresh["id"])))
    assert f"job {fresh['id']} is scheduled, not failed" in line
    line = one_line_error(*invoke(db_url, closed_broker, "jobs", "retry", "424242"))
    assert "job 424242 does not exist" in line
    line = one_line_error(
        *invoke(db_url, closed_broker, "jobs", "retry", str(job_id), "--patch", '"x"')
    )
    assert "--patch must be a JSON object" in line


def test_get_still_shows_progress(engine: Engine, db_url: str, closed_broker: str) -> None:
    job = parse(*invoke(db_url, closed_broker, "jobs", "submit", "noop", "--json"))["job"]
    code, out, err = invoke(db_url, closed_broker, "jobs", "get", str(job["id"]))
    assert code == 0, err
    assert "progress" in out and "scheduled" in out


def test_a_nul_character_in_a_cli_payload_is_refused_naming_the_field(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    args = ("jobs", "submit", "noop", "--payload", '{"note": ["fine", "bad\\u0000"]}')
    line = one_line_error(*invoke(db_url, closed_broker, *args))
    assert "payload.note[1] contains a NUL character" in line
    assert "UntranslatableCharacter" not in line and "Postgres cannot store" in line
    line = one_line_error(
        *invoke(db_url, closed_broker, "jobs", "submit", "noop", "--tenant", "a\x00")
    )
    assert "tenant_id contains a NUL character" in line
    with transaction(engine) as conn:
        assert JobsRepository(conn).list(JobFilter(), after_id=0, limit=5).jobs == []
