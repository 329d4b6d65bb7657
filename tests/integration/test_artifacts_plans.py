"""The artifacts' statements read by their indexes: planned generically (as a prepared
statement is, once a connection has run it a few times) over a filled table, none of them
scans ``artifacts`` or ``jobs`` whole."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import Engine, text

from jobengine.store import artifacts_repository as q

STATEMENTS = {"attach": q.ATTACH, "of_job": q.OF_JOB, "one": q.ONE, "of_run": q.OF_RUN}
PARAM = re.compile(r"%\((\w+)\)s")


def generic(sql: str) -> str:
    """``%(name)s`` parameters as ``$n``, the same name the same number."""
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${numbers.setdefault(match.group(1), len(numbers) + 1)}"

    return PARAM.sub(number, sql)


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_an_artifacts_statement_never_scans_a_whole_table(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (tenant_id, project_id, type, queue, payload, status, "
                "completed_at) SELECT 't', 'p', 'noop', 'default', '{}', 'completed', now() "
                "FROM generate_series(1, 2000)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO artifacts (tenant_id, job_id, name, content_type, size_bytes, "
                "sha256, storage_key) SELECT 't', j.id, 'a' || n, 'text/plain', 1, 'x', "
                "'k' || j.id || '-' || n FROM jobs AS j, generate_series(1, 10) AS n"
            )
        )
        conn.execute(text("ANALYZE jobs"))
        conn.execute(text("ANALYZE artifacts"))
        plan = "\n".join(
            row[0]
            for row in conn.execute(text(f"EXPLAIN (GENERIC_PLAN) {generic(STATEMENTS[name])}"))
        )
    assert "Seq Scan on artifacts" not in plan, plan
    assert "Seq Scan on jobs" not in plan, plan
