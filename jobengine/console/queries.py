"""The console's own SQL: the questions no REST route asks yet, each named with its index.

None runs per job; each runs once per page view, bounded by the backlog (queue depth, leases)
or by a time window of history (charts), found through the primary key, never by all of it.
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

HISTORY_BOUNDS = """
-- name: history_bounds  (pk_job_history: both ends of the index)
SELECT (SELECT min(id) FROM job_history) AS first, (SELECT max(id) FROM job_history) AS last
"""

HISTORY_AT_OR_AFTER = """
-- name: history_at_or_after  (pk_job_history: one row from an id)
-- History ids grow with time (one sequence, rows written as transitions commit), so the first
-- row of a time window is found by bisecting ids: a few dozen index probes, never a scan.
SELECT id, at FROM job_history WHERE id >= %(id)s ORDER BY id LIMIT 1
"""

OUTCOMES_BY_BUCKET = """
-- name: outcomes_by_type_and_bucket  (pk_job_history from the window's first id; pk_jobs)
-- Every attempt's outcome counts, so a job that failed twice and then completed shows both.
SELECT j.type,
       date_bin(make_interval(secs => %(bucket_seconds)s), h.at, %(since)s) AS bucket,
       count(*) FILTER (WHERE h.to_status = 'completed') AS completed,
       count(*) FILTER (WHERE h.to_status = 'failed') AS failed
FROM job_history h JOIN jobs j ON j.id = h.job_id
WHERE h.id >= %(first_id)s AND h.at >= %(since)s AND h.to_status IN ('completed', 'failed')
  AND (%(tenant_id)s::text IS NULL OR j.tenant_id = %(tenant_id)s::text)
GROUP BY 1, 2
ORDER BY 2, 1
"""

LATENCY_PERCENTILES = """
-- name: latency_percentiles  (pk_job_history from the window's first id; pk_jobs)
-- Submit to start: a first attempt's running step against the job's creation. Run time: an
-- outcome against the running step just before it, for every attempt.
WITH steps AS (
    SELECT h.job_id, h.to_status, h.attempt, h.at,
           lag(h.to_status) OVER w AS prev_status, lag(h.at) OVER w AS prev_at
    FROM job_history h
    WHERE h.id >= %(first_id)s AND h.at >= %(since)s
    WINDOW w AS (PARTITION BY h.job_id ORDER BY h.id)
),
measured AS (
    SELECT j.type,
           CASE WHEN s.to_status = 'running' AND s.attempt = 1
                THEN extract(epoch FROM s.at - j.created_at) END AS wait,
           CASE WHEN s.to_status IN ('completed', 'failed') AND s.prev_status = 'running'
                THEN extract(epoch FROM s.at - s.prev_at) END AS run
    FROM steps s JOIN jobs j ON j.id = s.job_id
    WHERE %(tenant_id)s::text IS NULL OR j.tenant_id = %(tenant_id)s::text
)
SELECT type, count(run) AS n,
       percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY wait) AS wait_seconds,
       percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY run) AS run_seconds
FROM measured
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
