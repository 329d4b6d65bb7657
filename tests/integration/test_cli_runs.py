"""``jobengine runs submit|list|get|cancel`` against a real Postgres, in-process.

The broker is a closed loopback port: a submitted run's roots stay scheduled for the leader,
and the command must say so. ``--json`` prints what REST answers, field for field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from jobengine.api.schemas_runs import RunCancelled, RunDetail, RunJobOut, RunOut
from tests.integration.cli_support import invoke, one_line_error, parse

pytestmark = pytest.mark.usefixtures("quiet_cli")

DIAMOND: dict[str, Any] = {
    "name": "diamond",
    "projectId": "etl",
    "jobs": [{"key": key, "type": "noop"} for key in "ABCD"],
    "edges": [
        {"parent": "A", "child": "B"},
        {"parent": "A", "child": "C"},
        {"parent": "B", "child": "D"},
        {"parent": "C", "child": "D"},
    ],
}


def aliases(model: type[RunOut] | type[RunJobOut]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("runs", "jobs", "job_edges")
        )


def submitted(db_url: str, broker: str, body: dict[str, Any] = DIAMOND) -> dict[str, Any]:
    return dict(
        parse(*invoke(db_url, broker, "runs", "submit", "-", "--json", input=json.dumps(body)))
    )


def test_submit_from_a_file_stores_the_run_and_leaves_its_root_to_the_leader(
    engine: Engine, db_url: str, closed_broker: str, tmp_path: Path
) -> None:
    source = tmp_path / "diamond.json"
    source.write_text(json.dumps(DIAMOND))
    code, out, err = invoke(db_url, closed_broker, "runs", "submit", str(source), "--tenant", "t1")
    assert code == 0, err
    [done, note] = out.strip().splitlines()
    run_id = int(done.split()[2])
    assert done == (
        f"submitted run {run_id} (diamond): 4 job(s), 1 scheduled at once,"
        " the rest wait for their parents"
    )
    assert note.startswith(f"1 job(s) of run {run_id} not published (broker unreachable")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT run_key, status::text, tenant_id, dispatched_at FROM jobs ORDER BY id")
        ).all()
    assert [tuple(r[:3]) for r in rows] == [
        ("A", "scheduled", "t1"), ("B", "pending", "t1"), ("C", "pending", "t1"),
        ("D", "pending", "t1"),
    ]  # fmt: skip
    assert rows[0][3] is None  # unmarked, so the leader publishes it


def test_submit_json_from_stdin_prints_the_rest_fields_and_a_key_makes_it_once(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    args = ["runs", "submit", "-", "--idempotency-key", "nightly-1", "--json"]
    first = parse(*invoke(db_url, closed_broker, *args, input=json.dumps(DIAMOND)))
    assert set(first) == aliases(RunDetail)
    assert set(first["jobs"][0]) == aliases(RunJobOut)
    assert (first["name"], first["projectId"], first["status"]) == ("diamond", "etl", "running")
    code, out, err = invoke(db_url, closed_broker, *args[:-1], input=json.dumps(DIAMOND))
    assert code == 0, err
    assert out.startswith(f"run {first['id']} (diamond) already exists under idempotency key")
    assert counts(engine) == (1, 4, 4)


def test_bad_input_is_a_one_line_error_naming_it_and_writes_nothing(
    engine: Engine, db_url: str, closed_broker: str, tmp_path: Path
) -> None:
    cycle = {**DIAMOND, "edges": [*DIAMOND["edges"], {"parent": "D", "child": "A"}]}
    unknown_field = {**DIAMOND, "jobs": [{"key": "A", "type": "noop", "colour": "red"}]}
    for source, stdin, says in (
        (str(tmp_path / "missing.json"), None, "cannot read"),
        ("-", "{not json", "Invalid JSON"),
        ("-", json.dumps(unknown_field), "jobs.0.colour: Extra inputs are not permitted"),
        ("-", json.dumps(cycle), "the run's edges make a cycle"),
        ("-", json.dumps({**DIAMOND, "jobs": [{"key": "A", "type": "nope"}], "edges": []}),
         "unknown job type 'nope'"),
    ):  # fmt: skip
        line = one_line_error(*invoke(db_url, closed_broker, "runs", "submit", source, input=stdin))
        assert says in line, line
    assert counts(engine) == (0, 0, 0)
    line = one_line_error(*invoke(db_url, closed_broker, "runs", "get", "999"))
    assert "run 999 does not exist" in line and "jobengine runs list" in line


def test_get_draws_the_diamond_as_a_tree_with_its_shared_child_once_and_then_by_reference(
    db_url: str, closed_broker: str
) -> None:
    run = submitted(db_url, closed_broker)
    code, out, err = invoke(db_url, closed_broker, "runs", "get", str(run["id"]))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"run {run['id']} diamond: running  (0/4 completed")
    drawn = [line.strip("│├└─ ") for line in lines[1:]]
    assert drawn == [
        "A  noop  scheduled  attempt 0",
        "B  noop  pending  attempt 0",
        "D  noop  pending  attempt 0",
        "C  noop  pending  attempt 0",
        "D (see above)",
    ]
    as_json = parse(*invoke(db_url, closed_broker, "runs", "get", str(run["id"]), "--json"))
    assert as_json == run


def test_list_filters_by_status_and_prints_the_rest_fields(db_url: str, closed_broker: str) -> None:
    first = submitted(db_url, closed_broker)
    second = submitted(db_url, closed_broker, {**DIAMOND, "name": "other", "projectId": "ops"})
    invoke(db_url, closed_broker, "runs", "cancel", str(first["id"]))
    running = parse(*invoke(db_url, closed_broker, "runs", "list", "--status", "running", "--json"))
    assert [r["id"] for r in running["items"]] == [second["id"]]
    assert set(running["items"][0]) == aliases(RunOut) and running["nextCursor"] is None
    paged = parse(*invoke(db_url, closed_broker, "runs", "list", "--limit", "1", "--json"))
    assert [r["id"] for r in paged["items"]] == [first["id"]] and paged["nextCursor"]
    args = ["runs", "list", "--limit", "1", "--cursor", paged["nextCursor"], "--json"]
    last = parse(*invoke(db_url, closed_broker, *args))
    assert [r["id"] for r in last["items"]] == [second["id"]] and last["nextCursor"] is None
    line = one_line_error(*invoke(db_url, closed_broker, "runs", "list", "--cursor", "bogus"))
    assert "cursor 'bogus' is not one this listing returned" in line
    code, out, err = invoke(db_url, closed_broker, "runs", "list", "--project", "ops")
    assert code == 0, err
    assert "other" in out and "diamond" not in out
    line = one_line_error(*invoke(db_url, closed_broker, "runs", "list", "--status", "done"))
    assert "--status 'done'" in line and "running, completed, failed, cancelled" in line


def test_cancel_cancels_every_job_and_cancelling_again_changes_nothing(
    db_url: str, closed_broker: str
) -> None:
    run = submitted(db_url, closed_broker)
    code, out, err = invoke(db_url, closed_broker, "runs", "cancel", str(run["id"]))
    assert code == 0, err
    assert (
        out.strip() == f"run {run['id']} cancelled: 4 job(s) cancelled, 0 running task(s) revoked"
    )
    again = parse(*invoke(db_url, closed_broker, "runs", "cancel", str(run["id"]), "--json"))
    assert set(again) == aliases(RunCancelled)
    assert again["status"] == "cancelled" and again["cancelledJobIds"] == []
    assert {job["status"] for job in again["jobs"]} == {"cancelled"}
    code, out, err = invoke(db_url, closed_broker, "runs", "cancel", str(run["id"]))
    assert out.strip() == f"run {run['id']} was already cancelled; nothing changed"
