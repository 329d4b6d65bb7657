"""``jobengine dlq`` against a real Postgres, driven in-process with ``CliRunner``.

Dead letters are made as the worker hooks make them (``Executor``), without a fleet. The broker
is a closed loopback port unless a test starts a real Redis: the replayed jobs then stay
scheduled for the leader, and the commands must say so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from jobengine.api.cursors import DEAD_LETTER_CURSOR, encode_cursor
from jobengine.domain.status import JobStatus
from jobengine.embedded import EmbeddedRedis
from jobengine.failures import NonRetryableError, PoisonMessage
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import JobsRepository
from tests.integration.cli_support import dead_letter, invoke, one_line_error, parse, statuses

pytestmark = pytest.mark.usefixtures("quiet_cli")


def test_list_pages_filters_and_names_the_entries(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    first, _ = dead_letter(engine)
    second, _ = dead_letter(engine)
    poison, _ = dead_letter(engine, tenant="t2", queue="q2", exc=PoisonMessage("undecodable"))

    listed = parse(*invoke(db_url, closed_broker, "dlq", "list", "--json"))
    assert [e["id"] for e in listed["items"]] == [first, second, poison]
    assert listed["nextCursor"] is None and (listed["total"], listed["totalExact"]) == (3, True)

    page = parse(*invoke(db_url, closed_broker, "dlq", "list", "--limit", "2", "--json"))
    assert [e["id"] for e in page["items"]] == [first, second]
    assert page["nextCursor"] == encode_cursor(second, DEAD_LETTER_CURSOR) and page["total"] == 3
    rest = parse(
        *invoke(db_url, closed_broker, "dlq", "list", "--cursor", page["nextCursor"], "--json")
    )
    assert [e["id"] for e in rest["items"]] == [poison]

    for flags in (
        ["--failure-reason", "poison"],
        ["--reason", "poison"],
        ["--tenant", "t2"],
        ["--queue", "q2"],
    ):
        found = parse(*invoke(db_url, closed_broker, "dlq", "list", *flags, "--json"))
        assert [e["id"] for e in found["items"]] == [poison], flags
    by_class = parse(
        *invoke(db_url, closed_broker, "dlq", "list", "--error-class", "PoisonMessage", "--json")
    )
    assert [e["id"] for e in by_class["items"]] == [poison]

    code, out, err = invoke(db_url, closed_broker, "dlq", "list", "--limit", "2")
    assert code == 0, err
    assert "non_retryable" in out and "bad input" in out
    assert "dead letters matching: 3 (this page: 2)" in out
    rows = [line.split() for line in out.splitlines()]
    assert [str(first), str(second)] == [r[0] for r in rows if len(r) > 5 and r[0].isdigit()]
    assert f"--cursor {encode_cursor(second, DEAD_LETTER_CURSOR)}" in out


def test_show_gives_the_error_payload_timeline_and_replays(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    entry_id, job_id = dead_letter(engine)
    invoke(db_url, closed_broker, "dlq", "replay", str(entry_id), "--reason", "fixed upstream")

    shown = parse(*invoke(db_url, closed_broker, "dlq", "show", str(entry_id), "--json"))
    assert (shown["id"], shown["jobId"], shown["payload"]) == (entry_id, job_id, {"n": 1})
    assert "NonRetryableError" in shown["traceback"]
    assert [s["toStatus"] for s in shown["timeline"]][-1] == "failed"
    [replay] = shown["replays"]
    assert replay["reason"] == "fixed upstream" and replay["outcome"] == "in_flight"

    code, out, err = invoke(db_url, closed_broker, "dlq", "show", str(entry_id))
    assert code == 0, err
    for expected in ("bad input", "traceback", '"n": 1', "timeline", "running → failed"):
        assert expected in out, expected
    assert "fixed upstream" in out and "in_flight" in out


def test_replaying_twice_replays_once_and_says_so(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    entry_id, job_id = dead_letter(engine)

    code, out, err = invoke(db_url, closed_broker, "dlq", "replay", str(entry_id))
    assert code == 0, err
    assert f"replayed dead letter {entry_id} (job {job_id})" in out
    assert f"job {job_id} not published (broker unreachable" in out
    assert "the leader will publish it" in out

    code, out, err = invoke(db_url, closed_broker, "dlq", "replay", str(entry_id))
    assert code == 0, err
    assert out.strip() == f"dead letter {entry_id} was already replayed; nothing done"

    with transaction(engine) as conn:
        actors = conn.execute(
            text("SELECT actor FROM dead_letter_replays WHERE dead_letter_id = :id"),
            {"id": entry_id},
        ).scalars()
        [actor] = list(actors)
        job = JobsRepository(conn).get(job_id)
    assert actor.startswith("cli:") and "@" in actor
    assert job.status is JobStatus.SCHEDULED
    assert job.dispatched_at is None  # left for the leader to publish


def test_replay_publishes_when_the_broker_is_reachable(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    broker = EmbeddedRedis(tmp_path / "redis")
    url = broker.start()
    try:
        entry_id, job_id = dead_letter(engine)
        done = parse(*invoke(db_url, url, "dlq", "replay", str(entry_id), "--json"))
    finally:
        broker.stop()
    assert done == {
        "deadLetterId": entry_id,
        "jobId": job_id,
        "outcome": "replayed",
        "replayId": done["replayId"],
        "published": True,
        "publishError": None,
    }
    with transaction(engine) as conn:
        assert JobsRepository(conn).get(job_id).dispatched_at is not None


def test_patch_must_be_a_json_object_and_is_merged(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    entry_id, job_id = dead_letter(engine)

    for bad, says in (("[1, 2]", "--patch must be a JSON object"), ("{n: 2", "not valid JSON")):
        line = one_line_error(
            *invoke(db_url, closed_broker, "dlq", "replay", str(entry_id), "--patch", bad)
        )
        assert says in line
    assert statuses(engine, "dead_letters", [entry_id]) == ["open"]

    done = parse(
        *invoke(
            db_url,
            closed_broker,
            "dlq",
            "replay",
            str(entry_id),
            "--patch",
            '{"n": 2, "fixed": true}',
            "--fresh-budget",
            "--json",
        )
    )
    assert done["outcome"] == "replayed" and done["published"] is False
    with transaction(engine) as conn:
        assert JobsRepository(conn).get(job_id).payload == {"n": 2, "fixed": True}


def test_dry_run_lists_exactly_what_the_bulk_replay_then_replays(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    noop = [dead_letter(engine)[0] for _ in range(3)]
    shell, _ = dead_letter(engine, job_type="shell")
    bulk = ["dlq", "replay", "--all-matching", "--type", "noop"]

    dry = parse(*invoke(db_url, closed_broker, *bulk, "--dry-run", "--json"))
    assert dry["dryRun"] is True and dry["selected"] == noop
    code, out, err = invoke(db_url, closed_broker, *bulk, "--dry-run")
    assert code == 0, err
    assert "dry run: 3 dead letter(s) would be replayed; nothing changed" in out
    assert all(str(i) in out for i in noop)
    assert statuses(engine, "dead_letters", [*noop, shell]) == ["open"] * 4

    code, out, err = invoke(db_url, closed_broker, *bulk, input="n\n")
    assert code == 1
    assert "Replay 3 dead letter(s)" in err and "nothing replayed" in err
    assert statuses(engine, "dead_letters", noop) == ["open"] * 3

    refused = one_line_error(*invoke(db_url, closed_broker, *bulk, "--json"))
    assert "needs --yes" in refused

    done = parse(
        *invoke(db_url, closed_broker, *bulk, "--yes", "--max-per-second", "500", "--json")
    )
    assert [r["deadLetterId"] for r in done["replayed"]] == dry["selected"]
    assert done["skipped"] == []
    assert sorted(done["unpublishedJobIds"]) == sorted(r["jobId"] for r in done["replayed"])
    assert statuses(engine, "dead_letters", [*noop, shell]) == ["replayed"] * 3 + ["open"]

    code, out, err = invoke(db_url, closed_broker, *bulk, "--yes")
    assert code == 0, err
    assert "no open dead letter matches; nothing replayed" in out


def test_bulk_replay_says_what_it_did_and_needs_a_filter(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    first, _ = dead_letter(engine)
    second, _ = dead_letter(engine, job_type="shell")

    line = one_line_error(*invoke(db_url, closed_broker, "dlq", "replay", "--all-matching"))
    assert "needs at least one filter" in line and "--everything" in line

    code, out, err = invoke(
        db_url, closed_broker, "dlq", "replay", "--all-matching", "--everything", input="y\n"
    )
    assert code == 0, err
    assert "replayed 2 of 2 dead letter(s); skipped 0" in out
    assert "2 job(s) not published (broker unreachable" in out
    assert statuses(engine, "dead_letters", [first, second]) == ["replayed"] * 2


def test_discard_is_idempotent_and_purge_removes_only_dealt_with_entries(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    discarded, job_id = dead_letter(engine)
    kept, _ = dead_letter(engine)

    code, out, err = invoke(db_url, closed_broker, "dlq", "discard", str(discarded))
    assert code == 0, err
    assert out.strip() == f"discarded dead letter {discarded} (job {job_id})"
    code, out, err = invoke(db_url, closed_broker, "dlq", "discard", str(discarded))
    assert code == 0, err
    assert out.strip() == f"dead letter {discarded} was already discarded; nothing done"

    line = one_line_error(*invoke(db_url, closed_broker, "dlq", "replay", str(discarded)))
    assert "was discarded" in line

    code, out, err = invoke(db_url, closed_broker, "dlq", "purge", "--older-than", "7d", "--yes")
    assert code == 0, err
    assert out.startswith("purged 0 dead letter(s)")
    code, _out, err = invoke(db_url, closed_broker, "dlq", "purge", "--older-than", "0s", input="n")
    assert code == 1 and "nothing purged" in err
    purged = parse(
        *invoke(db_url, closed_broker, "dlq", "purge", "--older-than", "0s", "--yes", "--json")
    )
    assert purged["purged"] == 1
    listed = parse(*invoke(db_url, closed_broker, "dlq", "list", "--status", "all", "--json"))
    assert [e["id"] for e in listed["items"]] == [kept]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["dlq", "list", "--reason", "bored"], "--failure-reason 'bored'"),
        (["dlq", "list", "--status", "closed"], "open, replayed, discarded, all"),
        (["dlq", "list", "--since", "yesterday"], "--since 'yesterday' is not an ISO 8601"),
        (["dlq", "list", "--until", "2026-01-01T00:00:00"], "has no timezone offset"),
        (["dlq", "show", "999999"], "dead letter 999999 does not exist"),
        (["dlq", "replay", "999999"], "dead letter 999999 does not exist"),
        (["dlq", "discard", "999999"], "dead letter 999999 does not exist"),
        (["dlq", "purge", "--older-than", "soon", "--yes"], "--older-than 'soon'"),
        (
            ["dlq", "replay", "--all-matching", "--failure-reason", "x", "--dry-run"],
            "retries_exhausted, non_retryable, poison, lease_expired",
        ),
    ],
)
def test_bad_values_and_unknown_ids_are_one_line_errors(
    db_url: str, closed_broker: str, args: list[str], says: str
) -> None:
    assert says in one_line_error(*invoke(db_url, closed_broker, *args))


@pytest.mark.parametrize(
    "args",
    [
        ["dlq", "list", "--limit", "many"],
        ["dlq", "replay"],
        ["dlq", "replay", "5", "--all-matching"],
        ["dlq", "replay", "5", "--type", "noop"],
    ],
)
def test_bad_usage_exits_with_2(db_url: str, closed_broker: str, args: list[str]) -> None:
    code, _out, _err = invoke(db_url, closed_broker, *args)
    assert code == 2


def test_show_gives_a_failed_commands_exit_code_and_the_end_of_its_stderr(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    stderr = "".join(f"warning {n}\n" for n in range(1, 31)) + "fatal: disk full\n"
    details = {"exit_code": 3, "stderr": stderr}
    failure = NonRetryableError("command exited with 3", details=details)
    entry_id, _ = dead_letter(engine, exc=failure)

    shown = parse(*invoke(db_url, closed_broker, "dlq", "show", str(entry_id), "--json"))
    assert shown["exitCode"] == 3
    tail = shown["stderrTail"].splitlines()
    assert len(tail) == 20 and tail[-1] == "fatal: disk full" and tail[0] == "warning 12"
    code, out, err = invoke(db_url, closed_broker, "dlq", "show", str(entry_id))
    assert code == 0, err
    assert "exit code" in out and "fatal: disk full" in out and "warning 11" not in out
