"""``jobengine schedules``: create (a job, or a run from ``--run-file``), list, get, pause,
resume and delete with ``--json`` in the REST fields, and refusals as one line naming the
field, with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.cli_support import invoke, one_line_error, parse

pytestmark = pytest.mark.usefixtures("quiet_cli")

CREATE = (
    "schedules",
    "create",
    "nightly",
    "--type",
    "noop",
    "--cron",
    "30 2 * * *",
    "--zone",
    "Europe/Berlin",
    "--tenant",
    "shop",
    "--payload",
    '{"report": "sales"}',
)


def test_schedules_commands_speak_the_rest_fields(db_url: str, closed_broker: str) -> None:
    made = parse(*invoke(db_url, closed_broker, *CREATE, "--overlap", "allow", "--json"))
    assert {k: made[k] for k in ("name", "tenantId", "cron", "zone", "overlap", "paused")} == {
        "name": "nightly",
        "tenantId": "shop",
        "cron": "30 2 * * *",
        "zone": "Europe/Berlin",
        "overlap": "allow",
        "paused": False,
    }
    assert made["job"]["payload"] == {"report": "sales"}
    assert made["nextSlotAt"] is not None
    sid = str(made["id"])
    [listed] = parse(*invoke(db_url, closed_broker, "schedules", "list", "--json"))["items"]
    assert listed == made
    code, out, err = invoke(db_url, closed_broker, "schedules", "list")
    assert code == 0, err
    assert "nightly" in out and "30 2 * * * (Europe/Berlin)" in out
    got = parse(*invoke(db_url, closed_broker, "schedules", "get", sid, "--json"))
    assert got == made | {"slots": []}
    paused = parse(*invoke(db_url, closed_broker, "schedules", "pause", sid, "--json"))
    assert paused["paused"] is True
    code, out, err = invoke(db_url, closed_broker, "schedules", "resume", sid)
    assert code == 0, err
    assert "resumed" in err + out
    gone = parse(*invoke(db_url, closed_broker, "schedules", "delete", sid, "--json"))
    assert gone == {"id": made["id"], "deleted": True}
    line = one_line_error(*invoke(db_url, closed_broker, "schedules", "get", sid))
    assert f"schedule {sid} does not exist" in line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--cron", "61 2 * * *"), "cron: '61 2 * * *' is not a cron expression"),
        (("--zone", "Europe/Atlantis"), "zone: 'Europe/Atlantis' is not an IANA time zone"),
        (("--overlap", "sometimes"), "overlap: 'sometimes' is not an overlap policy"),
        (("--interval-seconds", "60"), "cron: give exactly one of cron and intervalSeconds"),
        (("--type", "teleport"), "unknown job type 'teleport'"),
    ],
)
def test_a_bad_schedule_is_one_line_naming_the_field_and_writes_nothing(
    db_url: str, closed_broker: str, args: tuple[str, ...], says: str
) -> None:
    line = one_line_error(*invoke(db_url, closed_broker, *CREATE, *args))
    assert says in line and "(" in line  # the hint follows in parentheses
    assert parse(*invoke(db_url, closed_broker, "schedules", "list", "--json"))["items"] == []


ETL = {
    "name": "nightly-etl",
    "projectId": "etl",
    "jobs": [{"key": "extract", "type": "noop"}, {"key": "load", "type": "noop"}],
    "edges": [{"parent": "extract", "child": "load"}],
}
RUN_CREATE = ("schedules", "create", "etl", "--cron", "30 2 * * *", "--tenant", "shop")


def test_create_with_a_run_file_schedules_the_run_runs_submit_takes(
    db_url: str, closed_broker: str, tmp_path: Path
) -> None:
    source = tmp_path / "etl.json"
    source.write_text(json.dumps(ETL))
    made = parse(*invoke(db_url, closed_broker, *RUN_CREATE, "--run-file", str(source), "--json"))
    assert (made["projectId"], made["job"], made["run"]["name"]) == ("etl", None, "nightly-etl")
    assert [job["key"] for job in made["run"]["jobs"]] == ["extract", "load"]
    assert made["run"]["edges"] == [{"parent": "extract", "child": "load"}]
    code, out, err = invoke(db_url, closed_broker, "schedules", "list")
    assert code == 0, err
    assert "run nightly-etl (2 jobs)" in out
    code, out, err = invoke(db_url, closed_broker, "schedules", "get", str(made["id"]))
    assert code == 0, err
    assert "run nightly-etl (2 jobs) in shop/etl" in err + out
    from_stdin = parse(
        *invoke(
            db_url,
            closed_broker,
            *RUN_CREATE[:2],
            "etl-copy",
            *RUN_CREATE[3:],
            "--run-file",
            "-",
            "--json",
            input=json.dumps({k: v for k, v in ETL.items() if k != "projectId"}),
        )
    )
    assert (from_stdin["projectId"], from_stdin["run"]) == ("default", made["run"])


@pytest.mark.parametrize(
    ("extra", "document", "says"),
    [
        (("--type", "noop"), ETL, "run: both job and run given"),
        ((), {**ETL, "edges": [*ETL["edges"], {"parent": "load", "child": "extract"}]}, "cycle"),
        ((), {**ETL, "jobs": []}, "jobs: List should have at least 1 item"),
        (("--project", "other"), ETL, "--project 'other' and the run file's projectId 'etl'"),
    ],
)
def test_a_bad_run_file_is_one_line_naming_what_is_wrong_and_writes_nothing(
    db_url: str,
    closed_broker: str,
    tmp_path: Path,
    extra: tuple[str, ...],
    document: dict[str, object],
    says: str,
) -> None:
    source = tmp_path / "etl.json"
    source.write_text(json.dumps(document))
    args = (*RUN_CREATE, "--run-file", str(source), *extra)
    line = one_line_error(*invoke(db_url, closed_broker, *args))
    assert says in line and "(" in line
    assert parse(*invoke(db_url, closed_broker, "schedules", "list", "--json"))["items"] == []


def test_create_without_type_or_run_file_is_refused_naming_the_job(
    db_url: str, closed_broker: str
) -> None:
    line = one_line_error(*invoke(db_url, closed_broker, *RUN_CREATE))
    assert "job: neither job nor run given" in line
