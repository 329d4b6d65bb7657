"""Provenance exports: a selection of jobs, their histories, outcomes and audit entries, as
one hash-chained NDJSON document (``audit.chain``), streamed in constant memory.

The bound (``AsOf``) is a set of id high-water marks, not a time: every line below it is
made of rows that never change once written (history, replays, audit entries) or of columns
fixed at a job's birth, and an outcome is computed from the history inside the bound. So an
export with the same selection and bound gives the same bytes however many jobs were
submitted or moved since. A new bound is the highest ids visible to one snapshot, taken once
the transactions that snapshot saw in flight (which may hold lower ids) have ended.

What the database does not keep, an export cannot repeat: a replay that patches a job's
payload after the bound, or a later attempt that replaces an artifact of the same name,
changes that job's lines in exports taken after it; retention deleting a job removes its
lines. ``verify`` tells an export that was changed from one that was not, never which of
two differing exports is right.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Connection, Engine

import jobengine
from jobengine.audit import export_queries as q
from jobengine.audit.chain import (
    AUDIT,
    FORMAT,
    HEADER,
    HISTORY,
    JOB,
    MANIFEST,
    OUTCOME,
    Chain,
    manifest_record,
    utc,
)
from jobengine.errors import JobEngineError, ValidationError
from jobengine.runs.errors import RunNotFound
from jobengine.store.database import run_all, run_statement, transaction

PAGE_SIZE = 1_000
SETTLE_SECONDS = 30.0
"""How long a new bound waits for the transactions in flight when it was taken."""


class BoundNotSettled(JobEngineError):
    code = "EXPORT_BOUND_NOT_SETTLED"
    retryable = True
    hint = (
        "A transaction open since the export began has not ended; retry, or look for a "
        "long-running transaction in pg_stat_activity."
    )


class ExportMismatch(JobEngineError):
    code = "EXPORT_MISMATCH"
    hint = (
        "The rows inside the bound changed since that line was written (retention deleted "
        "jobs, or a payload was patched): export the range again from the start."
    )


@dataclass(frozen=True, slots=True)
class Selection:
    """Which jobs an export covers: a tenant's, a run's, those created in [since, until),
    or any combination (all given conditions hold). ``own_entries_only`` keeps out audit
    entries filed under another tenant or fleet-wide (a bulk act across tenants) even when
    they touched a selected job: what a tenant's key may read of the audit log."""

    tenant: str | None = None
    run_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    own_entries_only: bool = False

    def __post_init__(self) -> None:
        if self.own_entries_only and self.tenant is None:
            raise ValueError("own_entries_only needs a tenant")
        if self.since and self.until and self.since >= self.until:
            raise ValidationError(
                f"since ({utc(self.since)}) is not before until ({utc(self.until)})",
                hint="Give a range whose start comes before its end.",
            )

    def record(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "runId": self.run_id,
            "since": utc(self.since),
            "until": utc(self.until),
            "ownEntriesOnly": self.own_entries_only,
        }

    @classmethod
    def of_record(cls, record: dict[str, Any]) -> Selection:
        def when(value: str | None) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value)

        return cls(
            record["tenant"],
            record["runId"],
            when(record["since"]),
            when(record["until"]),
            record["ownEntriesOnly"],
        )

    def params(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "run_id": self.run_id,
            "since": self.since,
            "until": self.until,
            "own_entries_only": self.own_entries_only,
        }


@dataclass(frozen=True, slots=True)
class AsOf:
    """The highest ids an export covers; ``token`` is how a user asks for the same bound."""

    job_id: int
    history_id: int
    audit_id: int
    artifact_id: int

    def record(self) -> dict[str, int]:
        return {
            "jobId": self.job_id,
            "historyId": self.history_id,
            "auditId": self.audit_id,
            "artifactId": self.artifact_id,
        }

    @classmethod
    def of_record(cls, record: dict[str, Any]) -> AsOf:
        return cls(record["jobId"], record["historyId"], record["auditId"], record["artifactId"])

    @property
    def token(self) -> str:
        return f"j{self.job_id}.h{self.history_id}.a{self.audit_id}.f{self.artifact_id}"

    @classmethod
    def parse(cls, token: str) -> AsOf:
        parts = token.strip().split(".")
        prefixes = ("j", "h", "a", "f")
        if len(parts) != 4 or any(
            not p.startswith(x) or not p[1:].isdigit() for p, x in zip(parts, prefixes, strict=True)
        ):
            raise ValidationError(
                f"asOf {token!r} is not a bound",
                hint="Copy it from an export's header (e.g. j120.h560.a33.f4), or leave it "
                "out for a bound taken now.",
            )
        return cls(*(int(p[1:]) for p in parts))

    def params(self) -> dict[str, int]:
        return {
            "job_mark": self.job_id,
            "history_mark": self.history_id,
            "audit_mark": self.audit_id,
            "artifact_mark": self.artifact_id,
        }


def take_bound(engine: Engine, *, settle_seconds: float = SETTLE_SECONDS) -> AsOf:
    """The highest ids now, once no transaction that could still write a lower one is open."""
    with transaction(engine) as conn:
        marks = run_statement(conn, q.HIGH_WATER_MARKS, {})
    assert marks is not None
    deadline = time.monotonic() + settle_seconds
    while True:
        with transaction(engine) as conn:
            open_ = run_statement(conn, q.IN_FLIGHT, {"snapshot": marks["snapshot"]})
        if open_ is None or open_["n"] == 0:
            break
        if time.monotonic() > deadline:
            raise BoundNotSettled(
                f"{open_['n']} transaction(s) open when the export began are still open "
                f"after {settle_seconds:g}s"
            )
        time.sleep(0.01)  # polling the database for a condition, with a deadline
    return AsOf(marks["job_id"], marks["history_id"], marks["audit_id"], marks["artifact_id"])


@dataclass(frozen=True, slots=True)
class Position:
    """Where an export continues: after job ``job_id`` (its line, its history up to
    ``history_id``, and its outcome once ``job_done``), or after audit entry ``entry_id``."""

    job_id: int = 0
    history_id: int = 0
    job_done: bool = True
    entry_id: int = 0
    in_audit: bool = False
    done: bool = False

    @classmethod
    def after(cls, line: dict[str, Any]) -> Position:
        """The position just past ``line``, an export's line."""
        kind = line["kind"]
        if kind == HEADER:
            return cls()
        if kind == JOB:
            return cls(job_id=line["id"], job_done=False)
        if kind == HISTORY:
            return cls(job_id=line["jobId"], history_id=line["id"], job_done=False)
        if kind == OUTCOME:
            return cls(job_id=line["jobId"])
        if kind == AUDIT:
            return cls(entry_id=line["id"], in_audit=True)
        return cls(done=True)


def _page(conn: Connection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """A page's rows, planned for its own parameters every time: a prepared statement's
    generic plan, made without knowing how many jobs the tenant or run has, may read and
    sort all of them for every page; one plan per thousand jobs costs nothing."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    with driver.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params, prepare=False)
        return cur.fetchall()


def _job(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "tenantId": row["tenant_id"],
        "projectId": row["project_id"],
        "type": row["type"],
        "queue": row["queue"],
        "priority": row["priority"],
        "payload": row["payload"],
        "retryPolicy": row["retry_policy"],
        "timeLimitSeconds": row["time_limit_seconds"],
        "idempotencyKey": row["idempotency_key"],
        "runId": row["run_id"],
        "runKey": row["run_key"],
        "triggerRule": row["trigger_rule"],
        "scheduledFor": utc(row["scheduled_for"]),
        "createdAt": utc(row["created_at"]),
    }


def _history(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "jobId": row["job_id"],
        "fromStatus": row["from_status"],
        "toStatus": row["to_status"],
        "at": utc(row["at"]),
        "actor": row["actor"],
        "reason": row["reason"],
        "attempt": row["attempt"],
        "details": row["details"],
    }


def _replay(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "historyId": row["history_id"],
        "at": utc(row["at"]),
        "actor": row["actor"],
        "reason": row["reason"],
        "attempt": row["attempt"],
        "payloadPatch": row["payload_patch"],
        "freshBudget": row["fresh_budget"],
    }


def _artifact(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "contentType": row["content_type"],
        "sizeBytes": row["size_bytes"],
        "sha256": row["sha256"],
        "createdAt": utc(row["created_at"]),
    }


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": utc(row["at"]),
        "actor": row["actor"],
        "surface": row["surface"],
        "action": row["action"],
        "objectKind": row["object_kind"],
        "objectId": row["object_id"],
        "tenant": row["tenant"],
        "clientAddr": row["client_addr"],
        "outcome": row["outcome"],
        "reason": row["reason"],
        "detail": row["detail"],
    }


def _by_job(rows: Sequence[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["job_id"], []).append(row)
    return grouped


def _outcome(
    job: dict[str, Any],
    history: Sequence[dict[str, Any]],
    dead_letter: dict[str, Any] | None,
    replays: Sequence[dict[str, Any]],
    artifacts: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The job as its history inside the bound leaves it. The result is the job's own only
    once that history completed it (a completed job never moves again); the last error is the
    one its last failed row recorded, since ``last_error`` moves on with later attempts."""
    last = history[-1] if history else None
    status = None if last is None else last["to_status"]
    failures = [row for row in history if row["to_status"] == "failed"]
    error = failures[-1]["details"].get("error") if failures else None
    letter = None
    if dead_letter is not None and (status == "failed" or replays):
        letter = {
            "id": dead_letter["id"],
            "firstFailedAt": utc(dead_letter["first_failed_at"]),
            "replays": [_replay(r) for r in replays],
        }
    return {
        "jobId": job["id"],
        "status": status,
        "attempt": None if last is None else last["attempt"],
        "at": None if last is None else utc(last["at"]),
        "result": job["result"] if status == "completed" else None,
        "lastError": error,
        "deadLetter": letter,
        "artifacts": [_artifact(a) for a in artifacts],
    }


class Exporter:
    """The records of one export, in order, read page by page below ``as_of``."""

    def __init__(
        self,
        engine: Engine,
        selection: Selection,
        as_of: AsOf,
        *,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.engine = engine
        self.selection = selection
        self.as_of = as_of
        self.page_size = page_size
        self._params = {**selection.params(), **as_of.params(), "limit": page_size}
        if selection.run_id is not None:
            self._jobs_sql = q.JOBS_OF_RUN
        elif selection.tenant is not None:
            self._jobs_sql = q.JOBS_OF_TENANT
        else:
            self._jobs_sql = q.JOBS_ALL

    def header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "selection": self.selection.record(),
            "asOf": self.as_of.record(),
            "engineVersion": jobengine.__version__,
        }

    def records(self, start: Position) -> Iterator[tuple[str, dict[str, Any]]]:
        if start.done:
            return
        if not start.in_audit:
            yield from self._jobs(start)
        yield from self._entries(start.entry_id)

    def _jobs(self, start: Position) -> Iterator[tuple[str, dict[str, Any]]]:
        after = start.job_id if start.job_done else start.job_id - 1
        while True:
            with transaction(self.engine) as conn:
                jobs = _page(conn, self._jobs_sql, {**self._params, "after": after})
                if not jobs:
                    return
                ids = {"job_ids": [j["id"] for j in jobs], **self.as_of.params()}
                history = _by_job(run_all(conn, q.HISTORY_OF_JOBS, ids))
                letters = {d["job_id"]: d for d in run_all(conn, q.DEAD_LETTERS_OF_JOBS, ids)}
                replays = _by_job(run_all(conn, q.REPLAYS_OF_JOBS, ids))
                artifacts = _by_job(run_all(conn, q.ARTIFACTS_OF_JOBS, ids))
            for job in jobs:
                rows = history.get(job["id"], [])
                resumed = not start.job_done and job["id"] == start.job_id
                if not resumed:
                    yield JOB, _job(job)
                for row in rows:
                    if not resumed or row["id"] > start.history_id:
                        yield HISTORY, _history(row)
                yield (
                    OUTCOME,
                    _outcome(
                        job,
                        rows,
                        letters.get(job["id"]),
                        replays.get(job["id"], []),
                        artifacts.get(job["id"], []),
                    ),
                )
            after = jobs[-1]["id"]

    def _entries(self, after: int) -> Iterator[tuple[str, dict[str, Any]]]:
        while True:
            with transaction(self.engine) as conn:
                entries = _page(conn, q.AUDIT_ENTRIES, {**self._params, "after": after})
            if not entries:
                return
            for entry in entries:
                yield AUDIT, _entry(entry)
            after = entries[-1]["id"]


def stream(exporter: Exporter, chain: Chain, start: Position) -> Iterator[bytes]:
    """The export's lines from ``start`` on, each ending in a newline, the manifest last;
    ``chain`` is where the lines before ``start`` left it (a fresh one for a new export)."""
    header = exporter.header()
    if chain.seq == 0:
        yield chain.line(HEADER, header)
    for kind, record in exporter.records(start):
        yield chain.line(kind, record)
    if not start.done:
        yield chain.line(MANIFEST, manifest_record(header, chain))


def stream_after(exporter: Exporter, seq: int, line_hash: str) -> Iterator[bytes]:
    """The lines after line ``seq`` (0-based) of this export, once the lines up to it were
    recomputed (read, not sent) and the last one hashed to ``line_hash``: a client that
    lost a download continues it from the last line it holds. The check runs before this
    returns, so a mismatch is an error the caller can answer with a status."""
    chain = Chain()
    lines = stream(exporter, chain, Position())
    while chain.seq <= seq:
        if next(lines, None) is None:
            raise ExportMismatch(f"the export has {chain.seq} lines; there is no line {seq}")
    if chain.prev != line_hash:
        raise ExportMismatch(f"line {seq} of the export hashes to {chain.prev}, not {line_hash}")
    return lines


def run_tenant(engine: Engine, run_id: int) -> str:
    """The tenant a run belongs to; ``RunNotFound`` for a run that does not exist."""
    with transaction(engine) as conn:
        row = run_statement(conn, q.RUN_TENANT, {"run_id": run_id})
    if row is None:
        raise RunNotFound(run_id)
    return str(row["tenant_id"])
