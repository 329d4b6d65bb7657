"""``jobengine schedules``: create, list, get, pause, resume and delete with ``--json`` in the
REST fields, and refusals as one line naming the field, with nothing written."""

from __future__ import annotations

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
