"""``jobengine types``: the catalogue as an operator reads it, from Postgres alone."""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from sqlalchemy import Engine

from jobengine.catalogue import announce
from jobengine.job_types import JobTypeSpec
from tests.integration.cli_support import invoke, one_line_error, parse

pytestmark = pytest.mark.usefixtures("quiet_cli")


class Invoice(BaseModel):
    order_id: int


def test_types_list_shows_builtins_and_announced_types_with_their_versions(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    spec = JobTypeSpec("send_invoice", queue="billing", payload_model=Invoice)
    announce(engine, [spec], "worker@billing:1")

    listed = parse(*invoke(db_url, closed_broker, "types", "list", "--json"))["items"]
    by_name = {t["name"]: t for t in listed}
    assert {"noop", "sleep", "shell", "fake_inference", "send_invoice"} <= set(by_name)
    invoice = by_name["send_invoice"]
    assert invoice["queue"] == "billing" and invoice["version"] == 1
    assert invoice["definitionHash"] == spec.definition_hash
    assert invoice["declaredBy"] == "worker@billing:1"
    assert by_name["noop"]["declaredBy"] == "engine" and by_name["noop"]["updatedAt"] is None

    code, out, err = invoke(db_url, closed_broker, "types", "list")
    assert code == 0, err
    assert "send_invoice" in out and "billing" in out and spec.definition_hash[:12] in out


def test_types_show_prints_the_payload_schema(
    engine: Engine, db_url: str, closed_broker: str
) -> None:
    announce(engine, [JobTypeSpec("send_invoice", payload_model=Invoice)], "worker@billing:1")

    shown = parse(*invoke(db_url, closed_broker, "types", "show", "send_invoice", "--json"))
    assert shown["payloadSchema"]["required"] == ["order_id"]
    assert shown["retryPolicy"]["maxRetries"] == 3
    code, out, err = invoke(db_url, closed_broker, "types", "show", "send_invoice")
    assert code == 0, err
    assert '"order_id"' in out and "version: 1" in out


def test_types_show_of_an_unknown_type_says_a_worker_must_announce_it(
    db_url: str, closed_broker: str
) -> None:
    line = one_line_error(*invoke(db_url, closed_broker, "types", "show", "nope"))
    assert "'nope': not in the catalogue" in line and "must announce it" in line
