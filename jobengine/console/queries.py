"""The console's own SQL: the questions no REST route asks yet, each named with its index.

None runs per job; each runs once per page view, bounded by the backlog (queue depth, leases)
or by a time window over finished jobs (charts), never by all of history.
"""

from __future__ import annotations

QUEUE_DEPTH = """
-- name: queue_depth  (ix_jobs_runnable: scheduled jobs only)
-- A job waits from when it became due: scheduled_at, or not_before when that came later.
SELECT queue, count(*) AS waiting,
       coalesce(extract(epoch FROM now() - min(greatest(scheduled_at, not_before))), 0)::float8
           AS oldest_waiting_seconds
FROM jobs
WHERE status = 'scheduled'
GROUP BY queue
ORDER BY queue
"""

LEASES = """
-- name: leases_held  (ix_jobs_lease_expiry: claimed and running jobs only)
SELECT id, type, queue, status::text AS status, attempt, lease_owner,
       extract(epoch FROM lease_expires_at - now())::float8 AS expires_in_seconds
FROM jobs
WHERE status IN ('claimed', 'running')
ORDER BY lease_expires_at
LIMIT %(limit)s
"""

FINISHED_BY_BUCKET = """
-- name: finished_by_type_and_bucket  (ix_jobs_final_completed_at: final jobs by finish time)
SELECT type,
       date_bin(make_interval(secs => %(bucket_seconds)s), completed_at, %(since)s) AS bucket,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM jobs
WHERE status IN ('completed', 'failed', 'cancelled') AND completed_at >= %(since)s
  AND (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s::text)
GROUP BY 1, 2
ORDER BY 2, 1
"""

LATENCY_PERCENTILES = """
-- name: latency_percentiles  (ix_jobs_final_completed_at: final jobs by finish time)
-- Submit to start is created_at to the last attempt's start; run time is that attempt's.
SELECT type, count(*) AS n,
       percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (
           ORDER BY extract(epoch FROM started_at - created_at)) AS wait_seconds,
       percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (
           ORDER BY extract(epoch FROM completed_at - started_at)) AS run_seconds
FROM jobs
WHERE status IN ('completed', 'failed', 'cancelled') AND completed_at >= %(since)s
  AND started_at IS NOT NULL
  AND (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s::text)
GROUP BY type
ORDER BY type
"""

SCHEDULES_TABLE = """
-- name: schedules_table  (catalog lookup: the schedules table lands with another issue)
SELECT to_regclass('schedules') IS NOT NULL AS present
"""

SCHEDULES = """
-- name: schedules  (whole table: one row per schedule, a handful)
SELECT * FROM schedules ORDER BY 1 LIMIT 200
"""
