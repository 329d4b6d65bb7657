"""``jobengine backfills create|list|get|cancel|sources`` against a real Postgres, in-process:
``--json`` prints the REST fields, refusals are one line naming the field, and the leader's
backfiller creates the jobs in between."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine, text

from jobengine.api.schemas_backfills import BackfillOut, BackfillSourceOut, PlanOut
from jobengine.maintenance.backfiller import Backfiller
from jobengine.maintenance.leadership import Leadership
from jobengine.maintenance.report import TickReport
from tests.integration.cli_support import invoke, one_line_error

pytestmark = pytest.mark.usefixtures("quiet_cli")

CREATE = [
    "backfills",
    "create",
    "orders",
    "--start",
    "2026-03-01T00:00:00Z",
    "--end",
    "2026-03-02T00:00:00Z",
    "--type",
    "noop",
    "--cron",
    "0 * * * *",
    "--zone",
    "Europe/Berlin",
    "--tenant",
    "t1",
]


def aliases(model: type[Any]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def run_json(db_url: str, broker: str, *args: str) -> Any:
    code, out, err = invoke(db_url, broker, *args, "--json")
    assert code == 0, (out, err)
    return json.loads(out)


def test_create_get_list_cancel_and_sources_print_the_rest_fields(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    dry = run_json(db_url, closed_broker, *CREATE, "--dry-run")
    assert dry["dryRun"] is True and dry["backfill"] is None
    assert set(dry["plan"]) == aliases(PlanOut) and dry["plan"]["slotsTotal"] == 24
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM backfills")).scalar_one() == 0

    made = run_json(db_url, closed_broker, *CREATE, "--max-in-flight", "10")["backfill"]
    assert set(made) == aliases(BackfillOut) and made["maxInFlight"] == 10
    leadership = Leadership(engine, "cli-test-leader", 30)
    assert leadership.acquire()
    Backfiller(engine, leadership, actor="leader").run(TickReport(leader=True))

    got = run_json(db_url, closed_broker, "backfills", "get", str(made["id"]))
    assert got["progress"]["created"] == 10 and got["progress"]["queued"] == 10
    code, out, _ = invoke(db_url, closed_broker, "backfills", "get", str(made["id"]))
    assert code == 0 and "10 created" in out and "next slot to create" in out
    listed = run_json(db_url, closed_broker, "backfills", "list", "--source", "orders")
    assert [b["id"] for b in listed["items"]] == [made["id"]]
    cancelled = run_json(
        db_url, closed_broker, "backfills", "cancel", str(made["id"]), "--cancel-queued"
    )
    assert cancelled["backfill"]["status"] == "cancelled"
    assert len(cancelled["cancelledJobIds"]) == 10
    [source] = run_json(db_url, closed_broker, "backfills", "sources")["items"]
    assert set(source) == aliases(BackfillSourceOut) and source["name"] == "orders"
    code, out, _ = invoke(db_url, closed_broker, "backfills", "sources")
    assert code == 0 and "orders" in out


def test_refusals_are_one_line_naming_the_field(db_url: str, closed_broker: str) -> None:
    ended = invoke(db_url, closed_broker, *CREATE[:4], "2026-03-03T00:00:00Z", *CREATE[5:])
    assert "is not after start" in one_line_error(*ended)
    naive = invoke(db_url, closed_broker, *CREATE[:4], "2026-03-01T00:00:00", *CREATE[5:])
    assert "--start" in one_line_error(*naive)
    both = invoke(db_url, closed_broker, *CREATE, "--interval-seconds", "60")
    assert "intervalSeconds" in one_line_error(*both)
    missing = invoke(db_url, closed_broker, "backfills", "get", "999")
    assert "backfill 999 not found" in one_line_error(*missing)
