"""A command the engine refuses is filed in the audit log as refused, as REST files one: under
the terminal's user, naming the object and the error's code; a usage error files nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text

from jobengine.cli_common import cli_actor
from tests.integration.cli_support import invoke, one_line_error

pytestmark = pytest.mark.usefixtures("quiet_cli")


def filed(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT actor, surface, action, object_id, outcome, reason"
                " FROM audit_entries ORDER BY id"
            )
        ).mappings()
        return [dict(r) for r in rows]


@pytest.mark.parametrize(
    ("args", "action", "object_id"),
    [
        (("keys", "revoke", "ak_nope"), "key.revoke", "ak_nope"),
        (("limits", "delete", "nope"), "limit.delete", "nope"),
        (
            ("limits", "set", "bad", "--type", "noop", "--rate", "0", "--burst", "1"),
            "limit.set",
            "bad",
        ),
        (("dlq", "discard", "999"), "dlq.discard", "999"),
        (("runs", "cancel", "999"), "run.cancel", "999"),
        (("schedules", "pause", "999"), "schedule.pause", "999"),
    ],
)
def test_a_refused_command_is_filed_once_as_refused_with_its_code(
    engine: Engine,
    db_url: str,
    closed_broker: str,
    args: tuple[str, ...],
    action: str,
    object_id: str,
) -> None:
    line = one_line_error(*invoke(db_url, closed_broker, *args))

    [entry] = filed(engine)
    assert {k: entry[k] for k in ("actor", "surface", "action", "object_id", "outcome")} == {
        "actor": cli_actor(),
        "surface": "cli",
        "action": action,
        "object_id": object_id,
        "outcome": "refused",
    }
    assert entry["reason"] and entry["reason"].isupper()  # the error's code, e.g. NOT_FOUND
    assert line.startswith("error: ")


def test_a_usage_error_is_not_an_act_and_files_nothing(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    code, _out, err = invoke(db_url, closed_broker, "dlq", "replay", "5", "--all-matching")
    assert code == 2, err
    assert filed(engine) == []
