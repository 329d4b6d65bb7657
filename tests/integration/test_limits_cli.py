"""``jobengine limits``: set, list and delete with ``--json`` in the REST fields, and refusals
as one line saying what to fix, with nothing written."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from jobengine.domain.job import NewJob
from jobengine.store.database import transaction
from jobengine.submission import submit
from tests.integration.cli_support import invoke, one_line_error, parse

pytestmark = pytest.mark.usefixtures("quiet_cli")

SET = ("limits", "set", "noop-ten", "--type", "noop", "--rate", "10", "--burst", "2")
# Ten an hour, not ten a second: the test reads the bucket empty after two submissions, and a
# busy machine can take the tenth of a second a per-second bucket needs to refill one.
HOURLY = (*SET, "--per", "hour")


def test_limits_set_list_and_delete_speak_the_rest_fields(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    made = parse(*invoke(db_url, closed_broker, *HOURLY, "--json"))
    assert {k: made[k] for k in ("name", "scope", "jobType", "rate", "per", "burst")} == {
        "name": "noop-ten",
        "scope": "type",
        "jobType": "noop",
        "rate": 10.0,
        "per": "hour",
        "burst": 2,
    }
    with transaction(engine) as conn:
        for _ in range(3):
            submit(conn, NewJob(type="noop"))

    [listed] = parse(*invoke(db_url, closed_broker, "limits", "list", "--json"))["items"]
    assert (listed["tokens"], listed["waiting"]) == (0, 1)
    assert listed["nextAdmissionAt"] is not None
    code, out, err = invoke(db_url, closed_broker, "limits", "list")
    assert code == 0, err
    assert "noop-ten" in out and "10/hour" in out

    gone = parse(*invoke(db_url, closed_broker, "limits", "delete", "noop-ten", "--json"))
    assert gone == {"name": "noop-ten", "deleted": True}
    assert parse(*invoke(db_url, closed_broker, "limits", "list", "--json"))["items"] == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--rate", "0"), "rate 0.0 is not a positive number"),
        (("--per", "day"), "per 'day' is not a unit of time"),
        (("--scope", "everyone"), "scope 'everyone' is not a rate limit scope"),
        (("--scope", "key"), "keyed but names no key path"),
    ],
)
def test_a_bad_limit_is_one_line_naming_the_field_and_writes_nothing(
    db_url: str, closed_broker: str, args: tuple[str, ...], says: str
) -> None:
    line = one_line_error(*invoke(db_url, closed_broker, *SET, *args))
    assert says in line and "(" in line  # the hint follows in parentheses
    assert parse(*invoke(db_url, closed_broker, "limits", "list", "--json"))["items"] == []


def test_deleting_an_unknown_limit_says_how_to_list_them(db_url: str, closed_broker: str) -> None:
    line = one_line_error(*invoke(db_url, closed_broker, "limits", "delete", "nope"))
    assert "rate limit 'nope' does not exist" in line and "jobengine limits list" in line
