"""The audit log is append-only in the database itself, whatever code connects to it."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from jobengine.store.database import transaction


def _one_entry(engine: Engine) -> int:
    with transaction(engine) as conn:
        entry: int = conn.execute(
            text(
                "INSERT INTO audit_entries (actor, surface, action, object_kind, outcome) "
                "VALUES ('cli:root@host', 'cli', 'key.create', 'key', 'done') RETURNING id"
            )
        ).scalar_one()
        conn.execute(
            text("INSERT INTO audit_entry_jobs (entry_id, job_id) VALUES (:e, 7)"), {"e": entry}
        )
    return entry


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET actor = 'someone else'",
        "DELETE FROM audit_entries",
        "UPDATE audit_entry_jobs SET job_id = 8",
        "DELETE FROM audit_entry_jobs",
        "TRUNCATE audit_entry_jobs",
        "TRUNCATE audit_entries CASCADE",
    ],
)
def test_a_plain_update_delete_or_truncate_of_the_audit_log_is_refused(
    engine: Engine, statement: str
) -> None:
    _one_entry(engine)
    with pytest.raises(DBAPIError, match="append-only") as refused, transaction(engine) as conn:
        conn.execute(text(statement))
    assert "retention" in str(refused.value)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM audit_entries")).scalars().all() == [
            "cli:root@host"
        ]
        assert conn.execute(text("SELECT job_id FROM audit_entry_jobs")).scalars().all() == [7]


def test_the_retention_setting_lets_a_delete_through_but_never_an_update(engine: Engine) -> None:
    entry = _one_entry(engine)
    with pytest.raises(DBAPIError, match="append-only"), transaction(engine) as conn:
        conn.execute(text("SET LOCAL jobengine.audit_retention = 'on'"))
        conn.execute(text("UPDATE audit_entries SET actor = 'x'"))
    with transaction(engine) as conn:
        conn.execute(text("SET LOCAL jobengine.audit_retention = 'on'"))
        conn.execute(text("DELETE FROM audit_entries WHERE id = :e"), {"e": entry})
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_entries")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM audit_entry_jobs")).scalar_one() == 0
