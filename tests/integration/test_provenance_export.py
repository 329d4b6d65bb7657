"""Provenance exports against a real Postgres: they verify, a changed byte is found at its
line, the same range gives the same bytes while the engine keeps working, an interrupted
export resumes to the same bytes, and the streaming path pages through a few hundred jobs."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from jobengine import guard
from jobengine.audit.chain import GENESIS
from jobengine.audit.export import AsOf, Exporter, Position, Selection, stream, take_bound
from jobengine.audit.export_file import resume, write
from jobengine.audit.verify import ExportBroken, verify
from jobengine.domain.dead_letter import DeadLetterReason
from jobengine.domain.job import NewJob
from jobengine.execution import Executor
from jobengine.store.database import transaction

ERROR = {"code": "BOOM", "class": "RuntimeError", "message": "it broke"}


def populate(engine: Engine, tenant: str, n: int) -> list[int]:
    """``n`` jobs of ``tenant``: a third completed, a third failed for good, the rest waiting."""
    with transaction(engine) as conn:
        jobs = guard.create_jobs(
            conn, [NewJob(type="noop", payload={"i": i}, tenant_id=tenant) for i in range(n)]
        )
    executor = Executor(engine, lease_ttl_seconds=30)
    for i, job in enumerate(jobs):
        if i % 3 == 2:
            continue
        claim = executor.claim(job.id, "worker-1")
        assert claim is not None
        if i % 3 == 0:
            executor.complete(claim, {"done": i})
        else:
            executor.record_failure(claim, ERROR, DeadLetterReason.NON_RETRYABLE)
    return [job.id for job in jobs]


def audit_entry(engine: Engine, tenant: str, job_ids: list[int], action: str) -> None:
    with transaction(engine) as conn:
        entry_id = conn.execute(
            text(
                "INSERT INTO audit_entries (actor, surface, action, object_kind, object_id, "
                "tenant, outcome) VALUES ('cli:op@host', 'cli', :a, 'job', :o, :t, 'done') "
                "RETURNING id"
            ),
            {"a": action, "o": str(job_ids[0]), "t": tenant},
        ).scalar_one()
        for job_id in job_ids:
            conn.execute(
                text("INSERT INTO audit_entry_jobs (entry_id, job_id) VALUES (:e, :j)"),
                {"e": entry_id, "j": job_id},
            )


def export_bytes(engine: Engine, selection: Selection, as_of: AsOf, page_size: int = 7) -> bytes:
    exporter = Exporter(engine, selection, as_of, page_size=page_size)
    return b"".join(stream(exporter, _fresh_chain(), Position()))


def _fresh_chain() -> Any:
    from jobengine.audit.chain import Chain

    return Chain()


def lines_of(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


@pytest.fixture
def exported(engine: Engine, tmp_path: Path) -> tuple[Path, AsOf]:
    ids = populate(engine, "acme", 12)
    populate(engine, "other", 3)
    audit_entry(engine, "acme", ids[:2], "job.cancel")
    as_of = take_bound(engine)
    path = tmp_path / "acme.ndjson"
    path.write_bytes(export_bytes(engine, Selection(tenant="acme"), as_of))
    return path, as_of


def test_an_export_verifies_and_its_manifest_counts_every_kind(exported: tuple[Path, AsOf]) -> None:
    path, _ = exported
    verified = verify(path)
    lines = lines_of(path.read_bytes())
    assert lines[0]["kind"] == "header" and lines[0]["prev"] == GENESIS
    manifest = lines[-1]
    assert manifest["kind"] == "manifest"
    assert manifest["counts"] == {"audit": 1, "header": 1, "history": 36, "job": 12, "outcome": 12}
    assert {line["tenantId"] for line in lines if line["kind"] == "job"} == {"acme"}
    assert manifest["lastHash"] == manifest["prev"]
    assert verified.counts == {**manifest["counts"], "manifest": 1}
    assert verified.lines == len(lines)
    raw = path.read_bytes().splitlines()
    assert verified.last_hash == hashlib.sha256(raw[-1]).hexdigest()


def test_outcomes_carry_results_errors_and_dead_letters_as_history_left_them(
    exported: tuple[Path, AsOf],
) -> None:
    path, _ = exported
    outcomes = [line for line in lines_of(path.read_bytes()) if line["kind"] == "outcome"]
    assert [o["status"] for o in outcomes[:3]] == ["completed", "failed", "scheduled"]
    assert outcomes[0]["result"] == {"done": 0} and outcomes[0]["deadLetter"] is None
    assert outcomes[1]["lastError"] == {
        "code": "BOOM",
        "class": "RuntimeError",
        "message": "it broke",
    }
    assert outcomes[1]["deadLetter"]["replays"] == []
    assert outcomes[2]["result"] is None and outcomes[2]["lastError"] is None


def _flip(data: bytearray, index: int) -> None:
    """A different byte that keeps the line printable where it can (a digit for a digit)."""
    old = chr(data[index])
    if old.isdigit():
        data[index] = ord("7" if old != "7" else "3")
    elif old.isalpha():
        data[index] = ord("q" if old != "q" else "z")
    else:
        data[index] ^= 0x01


def _offset(data: bytes, line: int, needle: bytes) -> int:
    """The offset of ``needle`` inside 0-based ``line``."""
    starts = [0] + [i + 1 for i, b in enumerate(data) if b == ord("\n")]
    found = data.index(needle, starts[line])
    assert found < starts[line + 1]
    return found + len(needle)


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        (0, b'"engineVersion":"'),  # a value in the header
        (0, b'"prev":"'),  # the header's genesis
        (5, b'"actor":"'),  # a middle line's value
        (5, b'"prev":"'),  # a middle line's link
        (6, b'"seq":'),  # a middle line's number
        (6, b"{"),  # a middle line's JSON
        (-2, b'"id":'),  # the last line before the manifest
        (-1, b'"job":'),  # a count in the manifest
        (-1, b'"engineVersion":"'),  # the manifest's copy of the header
        (-1, b'"prev":"'),  # the manifest's link
    ],
)
def test_flipping_one_byte_makes_verify_name_that_line(
    exported: tuple[Path, AsOf], line: int, needle: bytes
) -> None:
    path, _ = exported
    data = bytearray(path.read_bytes())
    count = data.count(b"\n")
    index = line % count
    offset = _offset(bytes(data), index, needle) - (1 if needle == b"{" else 0)
    _flip(data, offset)
    path.write_bytes(bytes(data))
    with pytest.raises(ExportBroken) as broken:
        verify(path)
    assert broken.value.line == index + 1, broken.value.message


def test_an_export_cut_short_fails_verify_for_its_missing_manifest(
    exported: tuple[Path, AsOf],
) -> None:
    path, _ = exported
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]))
    with pytest.raises(ExportBroken, match="manifest is missing"):
        verify(path)


def test_the_same_range_exports_the_same_bytes_after_more_jobs_and_history_were_written(
    engine: Engine, exported: tuple[Path, AsOf]
) -> None:
    path, as_of = exported
    # The engine keeps working: new jobs of the tenant, and its waiting jobs move on.
    populate(engine, "acme", 6)
    executor = Executor(engine, lease_ttl_seconds=30)
    waiting = [o["jobId"] for o in lines_of(path.read_bytes()) if o.get("status") == "scheduled"]
    for job_id in waiting:
        claim = executor.claim(job_id, "worker-2")
        assert claim is not None
        executor.complete(claim, {"late": True})
    audit_entry(engine, "acme", waiting, "dlq.replay")
    again = export_bytes(engine, Selection(tenant="acme"), as_of, page_size=1_000)
    assert again == path.read_bytes()
    later = export_bytes(engine, Selection(tenant="acme"), take_bound(engine))
    assert later != again  # a new bound sees what happened since


@pytest.mark.parametrize("cut", [1, 3, 10, 25, 40, -1])
def test_an_interrupted_export_resumed_is_byte_identical_to_an_uninterrupted_one(
    engine: Engine, exported: tuple[Path, AsOf], tmp_path: Path, cut: int
) -> None:
    path, _ = exported
    whole = path.read_bytes()
    lines = whole.splitlines(keepends=True)
    end = len(lines) + cut if cut < 0 else cut
    partial = tmp_path / "partial.ndjson"
    partial.write_bytes(b"".join(lines[:end]) + lines[end][:9])  # stopped inside a line
    written = resume(engine, partial)
    assert partial.read_bytes() == whole
    assert written.lines == len(lines) and written.appended == len(lines) - end


def test_resuming_a_finished_export_appends_nothing(
    engine: Engine, exported: tuple[Path, AsOf]
) -> None:
    path, _ = exported
    before = path.read_bytes()
    assert resume(engine, path).appended == 0
    assert path.read_bytes() == before


def test_a_run_export_holds_its_jobs_and_the_entries_on_the_run(engine: Engine) -> None:
    with transaction(engine) as conn:
        run_id = conn.execute(
            text(
                "INSERT INTO runs (tenant_id, project_id, name, jobs_total) "
                "VALUES ('acme', 'p', 'r', 2) RETURNING id"
            )
        ).scalar_one()
        for key in ("a", "b"):
            conn.execute(
                text(
                    "INSERT INTO jobs (tenant_id, project_id, type, payload, status, run_id, "
                    "run_key) VALUES ('acme', 'p', 'noop', '{}', 'pending', :r, :k)"
                ),
                {"r": run_id, "k": key},
            )
        conn.execute(
            text(
                "INSERT INTO audit_entries (actor, surface, action, object_kind, object_id, "
                "tenant, outcome) VALUES ('k', 'rest', 'run.cancel', 'run', :o, 'acme', 'done')"
            ),
            {"o": str(run_id)},
        )
    populate(engine, "acme", 2)
    data = export_bytes(engine, Selection(run_id=run_id), take_bound(engine))
    lines = lines_of(data)
    assert [line["runKey"] for line in lines if line["kind"] == "job"] == ["a", "b"]
    assert [line["action"] for line in lines if line["kind"] == "audit"] == ["run.cancel"]


def test_five_hundred_jobs_stream_through_pages_and_verify(engine: Engine, tmp_path: Path) -> None:
    with transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (tenant_id, project_id, type, payload, status) "
                "SELECT 'bulk', 'p', 'noop', jsonb_build_object('i', g), 'scheduled' "
                "FROM generate_series(1, 500) AS g"
            )
        )
        conn.execute(
            text(
                "INSERT INTO job_history (job_id, from_status, to_status, actor, attempt) "
                "SELECT id, NULL, 'scheduled', 'system', 0 FROM jobs WHERE tenant_id = 'bulk'"
            )
        )
    path = tmp_path / "bulk.ndjson"
    exporter = Exporter(engine, Selection(tenant="bulk"), take_bound(engine), page_size=100)
    with path.open("wb") as out:
        written = write(exporter, out)
    assert verify(path).counts == {
        "header": 1,
        "job": 500,
        "history": 500,
        "outcome": 500,
        "manifest": 1,
    }
    assert written.lines == 1 + 1500 + 1


def test_the_readmes_ten_line_verifier_checks_an_export_as_the_engine_does(
    exported: tuple[Path, AsOf], tmp_path: Path
) -> None:
    from tests.client.readme import example

    script = tmp_path / "verify_chain.py"
    script.write_text(example("Provenance exports"))
    path, _ = exported
    intact = subprocess.run(
        [sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=60
    )
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.split()[-1] == verify(path).last_hash
    lines = path.read_bytes().splitlines(keepends=True)
    lines[4] = lines[4].replace(b'"actor":"', b'"actor":"X', 1)
    path.write_bytes(b"".join(lines))
    broken = subprocess.run(
        [sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=60
    )
    assert broken.returncode == 1 and "chain broken at line 6" in broken.stderr


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan] + [node for child in plan.get("Plans", []) for node in _nodes(child)]


def test_each_page_statement_reads_in_id_order_from_an_index_never_sorting_the_range(
    engine: Engine,
) -> None:
    """A page of a tenant or run with many more jobs than a page holds walks an index in id
    order and stops at the page's end: a plan that read and sorted all of their jobs would
    make every page cost the whole range."""
    from jobengine.audit import export_queries as q

    with transaction(engine) as conn:
        run_id = conn.execute(
            text(
                "INSERT INTO runs (tenant_id, project_id, name, jobs_total) "
                "VALUES ('t0', 'p', 'r', 0) RETURNING id"
            )
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO jobs (tenant_id, project_id, type, payload, status, run_id, run_key) "
                "SELECT 't' || (g % 50), 'p', 'noop', '{}', 'scheduled', "
                "CASE WHEN g % 10 = 0 THEN :r END, CASE WHEN g % 10 = 0 THEN g::text END "
                "FROM generate_series(1, 100000) AS g"
            ),
            {"r": run_id},
        )
        conn.execute(
            text(
                "INSERT INTO job_history (job_id, from_status, to_status, actor, attempt) "
                "SELECT id, NULL, 'scheduled', 'system', 0 FROM jobs"
            )
        )
        conn.execute(text("ANALYZE"))
    marks = {"job_mark": 10**9, "history_mark": 10**9, "audit_mark": 10**9, "artifact_mark": 10**9}
    selection = {"since": None, "until": None, "after": 0, "limit": 100}
    cases = [
        (q.JOBS_OF_RUN, {"run_id": run_id, "tenant": None}, {"ix_jobs_run_id_id"}),
        # A tenant with a fiftieth of the jobs: its own index, or the primary key filtered,
        # whichever the planner deems cheaper; both in id order.
        (q.JOBS_OF_TENANT, {"run_id": None, "tenant": "t7"}, {"ix_jobs_tenant_id_id", "pk_jobs"}),
        (q.JOBS_ALL, {"run_id": None, "tenant": None}, {"pk_jobs"}),
        (q.HISTORY_OF_JOBS, {"job_ids": list(range(1, 101))}, {"ix_job_history_job_id_id"}),
    ]
    for sql, params, indexes in cases:
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            [(plan,)] = driver.execute(
                "EXPLAIN (FORMAT JSON) " + sql, {**marks, **selection, **params}
            ).fetchall()
        nodes = _nodes(plan[0]["Plan"])
        assert indexes & {n.get("Index Name") for n in nodes}, (indexes, plan)
        assert not {"Sort", "Seq Scan"} & {n["Node Type"] for n in nodes}, plan
