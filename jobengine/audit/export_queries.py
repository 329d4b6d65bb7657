"""Every statement a provenance export runs, named, with the index that serves it.

An export reads in keyset pages below its bound (``asOf``: the highest job, history, audit
entry and artifact ids it covers), never a whole range at once: a page of jobs by id, then
the history, dead letters, replays and artifacts of that page's jobs in one statement each,
then the audit entries by id. Each selection shape has its own jobs statement, so a
prepared statement's generic plan still walks the index that shape needs.

Parameters use psycopg's ``%(name)s`` style; statements run through ``run_all``.
"""

from __future__ import annotations

HIGH_WATER_MARKS = """
-- name: high_water_marks  (pk_jobs, pk_job_history, pk_audit_entries, pk_artifacts: max by index)
-- The bound of a new export, and the statement's snapshot: transactions still in flight in
-- it may hold lower ids not yet visible, so the export waits for them (IN_FLIGHT) first.
SELECT pg_current_snapshot()::text AS snapshot,
       (SELECT coalesce(max(id), 0) FROM jobs) AS job_id,
       (SELECT coalesce(max(id), 0) FROM job_history) AS history_id,
       (SELECT coalesce(max(id), 0) FROM audit_entries) AS audit_id,
       (SELECT coalesce(max(id), 0) FROM artifacts) AS artifact_id
"""

IN_FLIGHT = """
-- name: in_flight  (no table)
-- How many of the transactions in flight in the bound's snapshot still are.
SELECT count(*) AS n
FROM pg_snapshot_xip(%(snapshot)s::pg_snapshot) AS x(xid)
WHERE pg_xact_status(x.xid) = 'in progress'
"""

_JOB_COLUMNS = (
    "j.id, j.tenant_id, j.project_id, j.type, j.queue, j.priority, j.payload, j.retry_policy, "
    "j.time_limit_seconds, j.idempotency_key, j.run_id, j.run_key, j.trigger_rule, "
    "j.scheduled_for, j.created_at, j.status, j.result"
)

_CREATED_IN = """
  AND (%(since)s::timestamptz IS NULL OR j.created_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR j.created_at < %(until)s::timestamptz)"""

_PAGE = (
    """
  AND j.id > %(after)s AND j.id <= %(job_mark)s"""
    + _CREATED_IN
)

JOBS_OF_RUN = f"""
-- name: export_jobs_of_run  (ix_jobs_run_id_id)
SELECT {_JOB_COLUMNS} FROM jobs AS j
WHERE j.run_id = %(run_id)s
  AND (%(tenant)s::text IS NULL OR j.tenant_id = %(tenant)s::text){_PAGE}
ORDER BY j.id LIMIT %(limit)s
"""

JOBS_OF_TENANT = f"""
-- name: export_jobs_of_tenant  (ix_jobs_tenant_id_id)
SELECT {_JOB_COLUMNS} FROM jobs AS j
WHERE j.tenant_id = %(tenant)s{_PAGE}
ORDER BY j.id LIMIT %(limit)s
"""

JOBS_ALL = f"""
-- name: export_jobs_all  (pk_jobs)
-- A time range alone walks every job id below the bound, keeping those created in it.
SELECT {_JOB_COLUMNS} FROM jobs AS j
WHERE true{_PAGE}
ORDER BY j.id LIMIT %(limit)s
"""

HISTORY_OF_JOBS = """
-- name: export_history_of_jobs  (ix_job_history_job_id_id)
SELECT id, job_id, from_status, to_status, at, actor, reason, attempt, details
FROM job_history
WHERE job_id = ANY(%(job_ids)s::bigint[]) AND id <= %(history_mark)s
ORDER BY job_id, id
"""

DEAD_LETTERS_OF_JOBS = """
-- name: export_dead_letters_of_jobs  (uq_dead_letters_job_id)
SELECT id, job_id, first_failed_at FROM dead_letters
WHERE job_id = ANY(%(job_ids)s::bigint[])
"""

REPLAYS_OF_JOBS = """
-- name: export_replays_of_jobs  (uq_dead_letters_job_id, ix_dead_letter_replays_dead_letter_id_id)
-- Each replay is linked to the history row it wrote: within the bound when that row is.
SELECT r.id, d.job_id, r.history_id, r.actor, r.reason, r.attempt, r.payload_patch,
       r.fresh_budget, r.at
FROM dead_letters AS d JOIN dead_letter_replays AS r ON r.dead_letter_id = d.id
WHERE d.job_id = ANY(%(job_ids)s::bigint[]) AND r.history_id <= %(history_mark)s
ORDER BY d.job_id, r.id
"""

ARTIFACTS_OF_JOBS = """
-- name: export_artifacts_of_jobs  (uq_artifacts_job_id)
SELECT id, job_id, name, content_type, size_bytes, sha256, created_at FROM artifacts
WHERE job_id = ANY(%(job_ids)s::bigint[]) AND id <= %(artifact_mark)s
ORDER BY job_id, id
"""

_ENTRY_COLUMNS = (
    "e.id, e.at, e.actor, e.surface, e.action, e.object_kind, e.object_id, e.tenant, "
    "e.client_addr, e.outcome, e.reason, e.detail"
)

_TOUCHED_SELECTED_JOBS = (
    """EXISTS (
        SELECT 1 FROM audit_entry_jobs AS aj JOIN jobs AS j ON j.id = aj.job_id
        WHERE aj.entry_id = e.id AND j.id <= %(job_mark)s
          AND (%(tenant)s::text IS NULL OR j.tenant_id = %(tenant)s::text)
          AND (%(run_id)s::bigint IS NULL OR j.run_id = %(run_id)s::bigint)"""
    + _CREATED_IN.replace("\n", "\n      ")
    + ")"
)

_AT_IN = """
      AND (%(since)s::timestamptz IS NULL OR e.at >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR e.at < %(until)s::timestamptz)"""

AUDIT_ENTRIES = f"""
-- name: export_audit_entries  (pk_audit_entries; ix_audit_entry_jobs_entry_id, pk_jobs per entry)
-- The entries that touched a selected job, and those on the selection itself: on the run
-- when one is selected, else on the tenant, else (an admin's time range) every entry made in
-- the range. Walked by id below the bound. A tenant's key reads only entries filed under its
-- tenant (own_entries_only), as it does in the audit log.
SELECT {_ENTRY_COLUMNS} FROM audit_entries AS e
WHERE e.id > %(after)s AND e.id <= %(audit_mark)s
  AND (NOT %(own_entries_only)s OR e.tenant = %(tenant)s::text)
  AND ({_TOUCHED_SELECTED_JOBS}
       OR (%(run_id)s::bigint IS NOT NULL AND e.object_kind = 'run'
           AND e.object_id = %(run_id)s::bigint::text)
       OR (%(run_id)s::bigint IS NULL AND %(tenant)s::text IS NOT NULL
           AND e.tenant = %(tenant)s::text{_AT_IN})
       OR (%(run_id)s::bigint IS NULL AND %(tenant)s::text IS NULL{_AT_IN}))
ORDER BY e.id LIMIT %(limit)s
"""

RUN_TENANT = """
-- name: export_run_tenant  (pk_runs)
SELECT tenant_id FROM runs WHERE id = %(run_id)s
"""
