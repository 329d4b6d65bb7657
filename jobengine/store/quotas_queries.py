"""The statements of tenant quotas, tenant caps and fair shares, each named with its index.

Parameters use psycopg's ``%(name)s`` style; statements run through ``run_all``. Nothing here
runs for a tenant without a ``tenant_quotas`` row or a queue without a ``fair_queues`` row:
those cost the hot paths nothing but a cached lookup.
"""

from __future__ import annotations

QUOTA_COLUMNS = "tenant_id, max_queued, max_running, weight, updated_at"

ALL_QUOTAS = f"""
-- name: all_quotas  (pk_tenant_quotas; one row per tenant with a quota)
SELECT {QUOTA_COLUMNS} FROM tenant_quotas ORDER BY tenant_id
"""

SET_QUOTA = f"""
-- name: set_quota  (pk_tenant_quotas)
INSERT INTO tenant_quotas (tenant_id, max_queued, max_running, weight)
VALUES (%(tenant_id)s, %(max_queued)s, %(max_running)s, %(weight)s)
ON CONFLICT (tenant_id) DO UPDATE
SET max_queued = EXCLUDED.max_queued, max_running = EXCLUDED.max_running,
    weight = EXCLUDED.weight, updated_at = now()
RETURNING {QUOTA_COLUMNS}
"""

DELETE_QUOTA = """
-- name: delete_quota  (pk_tenant_quotas)
DELETE FROM tenant_quotas WHERE tenant_id = %(tenant_id)s RETURNING tenant_id
"""

LOCK_QUEUED_QUOTAS = """
-- name: lock_queued_quotas  (pk_tenant_quotas)
-- Submissions of one tenant take turns on its quota row, so the count that follows (a new
-- statement, hence a new snapshot) sees every submission committed before this one.
SELECT tenant_id, max_queued FROM tenant_quotas
WHERE tenant_id = ANY(%(tenants)s::text[]) AND max_queued IS NOT NULL
ORDER BY tenant_id
FOR UPDATE
"""

QUEUED_OF_TENANTS = """
-- name: queued_of_tenants  (ix_jobs_tenant_status_id: two index ranges per tenant)
SELECT t.tenant_id,
       (SELECT count(*) FROM jobs AS j
        WHERE j.tenant_id = t.tenant_id AND j.status IN ('pending', 'scheduled')) AS queued
FROM unnest(%(tenants)s::text[]) AS t(tenant_id)
"""

DRAIN_OF_TENANT = """
-- name: drain_of_tenant  (ix_jobs_tenant_status_id: its jobs claimed or running, and its
-- last 20 completed, read backwards)
-- How fast a refused tenant's queue drains, for Retry-After: the jobs it runs at once, and
-- how long its recent jobs ran. Runs only on a refusal.
SELECT (SELECT count(*) FROM jobs WHERE tenant_id = %(tenant_id)s
          AND status IN ('claimed', 'running')) AS running,
       (SELECT extract(epoch FROM avg(recent.completed_at - recent.started_at))::float8
        FROM (SELECT completed_at, started_at FROM jobs
              WHERE tenant_id = %(tenant_id)s AND status = 'completed'
              ORDER BY id DESC LIMIT 20) AS recent) AS seconds_per_job
"""

LOCK_TENANT_CAPS = """
-- name: lock_tenant_caps  (pk_tenant_quotas; primary key of jobs)
-- Claims of one capped tenant take turns on its row, as claims in a limited queue do on the
-- queue's: the count that follows sees every claim committed before this one. Rows are
-- locked in tenant order, so two claims never deadlock.
SELECT tenant_id, max_running FROM tenant_quotas
WHERE tenant_id IN (SELECT tenant_id FROM jobs WHERE id = ANY(%(ids)s::bigint[]))
  AND max_running IS NOT NULL
ORDER BY tenant_id
FOR UPDATE
"""

LEASED_OF_JOBS_TENANTS = """
-- name: leased_of_jobs_tenants  (primary key; ix_jobs_tenant_status_id for the counts)
-- Each job of a claim with its tenant and, for a capped tenant, how many of its jobs are
-- claimed or running now.
SELECT j.id, j.tenant_id,
       CASE WHEN j.tenant_id = ANY(%(capped)s::text[]) THEN
           (SELECT count(*) FROM jobs AS l
            WHERE l.tenant_id = j.tenant_id AND l.status IN ('claimed', 'running'))
       END AS leased
FROM jobs AS j
WHERE j.id = ANY(%(ids)s::bigint[])
ORDER BY j.id
"""

TENANTS_OF_JOBS = """
-- name: tenants_of_jobs  (primary key)
-- Read by a claim only while some tenant has a cap: a message names its job, not its tenant.
SELECT DISTINCT tenant_id FROM jobs WHERE id = ANY(%(ids)s::bigint[])
"""

CAP_ADMISSIONS = """
-- name: cap_admissions  (pk_tenant_quotas, ix_jobs_tenant_status_id)
-- For each capped tenant, due scheduled jobs without a message (outside fair-shared queues,
-- which the fair fill serves), as many as its free slots: the cap less its claimed or running
-- jobs and its messages in flight (the caller's count of what it published), oldest first.
SELECT j.id, q.tenant_id, j.type, j.queue, j.priority, j.attempt, j.time_limit_seconds
FROM tenant_quotas AS q
LEFT JOIN (
    SELECT f.tenant_id, count(*) AS n
    FROM unnest(%(flying_tenants)s::text[]) AS f(tenant_id)
    GROUP BY f.tenant_id
) AS flying ON flying.tenant_id = q.tenant_id
CROSS JOIN LATERAL (
    SELECT q.max_running - coalesce(flying.n, 0)
           - (SELECT count(*) FROM jobs WHERE tenant_id = q.tenant_id
                AND status IN ('claimed', 'running')) AS free
) AS slots
CROSS JOIN LATERAL (
    SELECT id, type, queue, priority, attempt, time_limit_seconds FROM jobs
    WHERE tenant_id = q.tenant_id AND status = 'scheduled' AND dispatched_at IS NULL
      AND (not_before IS NULL OR not_before <= now())
      AND queue NOT IN (SELECT queue FROM fair_queues)
    ORDER BY id
    LIMIT greatest(slots.free, 0)
) AS j
WHERE q.max_running IS NOT NULL
ORDER BY j.priority DESC, j.id
"""

ANY_CAP = """
-- name: any_cap  (pk_tenant_quotas)
SELECT 1 FROM tenant_quotas WHERE max_running IS NOT NULL LIMIT 1
"""

CAPPED_IN_FLIGHT = """
-- name: capped_in_flight  (ix_jobs_tenant_status_id: each capped tenant's scheduled jobs)
-- The admissions' starting point when they take over (a new leader): capped tenants'
-- messages in the broker. Later runs follow these ids by primary key instead.
SELECT j.id, j.tenant_id FROM tenant_quotas AS q
JOIN jobs AS j ON j.tenant_id = q.tenant_id
WHERE q.max_running IS NOT NULL AND j.status = 'scheduled' AND j.dispatched_at IS NOT NULL
"""

ALL_FAIR_QUEUES = """
-- name: all_fair_queues  (pk_fair_queues)
SELECT queue, max_in_flight, updated_at FROM fair_queues ORDER BY queue
"""

SET_FAIR_QUEUE = """
-- name: set_fair_queue  (pk_fair_queues)
INSERT INTO fair_queues (queue, max_in_flight) VALUES (%(queue)s, %(max_in_flight)s)
ON CONFLICT (queue) DO UPDATE SET max_in_flight = EXCLUDED.max_in_flight, updated_at = now()
RETURNING queue, max_in_flight, updated_at
"""

DELETE_FAIR_QUEUE = """
-- name: delete_fair_queue  (pk_fair_queues)
DELETE FROM fair_queues WHERE queue = %(queue)s RETURNING queue
"""

IN_FLIGHT_IN_QUEUE = """
-- name: in_flight_in_queue  (ix_jobs_runnable: the queue's scheduled jobs)
-- The fill's starting point when it takes over a queue (a new leader): its messages in the
-- broker, with their tenants. Later fills follow these ids by primary key instead.
SELECT id, tenant_id FROM jobs
WHERE queue = %(queue)s AND status = 'scheduled' AND dispatched_at IS NOT NULL
"""

STILL_IN_FLIGHT = """
-- name: still_in_flight  (primary key)
-- Of the messages a fill published, those not yet claimed.
SELECT id, tenant_id FROM jobs
WHERE id = ANY(%(ids)s::bigint[]) AND status = 'scheduled' AND dispatched_at IS NOT NULL
"""

FAIR_FILL = """
-- name: fair_fill  (ix_jobs_fair_undispatched; pk_tenant_quotas; ix_jobs_tenant_status_id)
-- The next jobs of one fair-shared queue, round-robin across the tenants waiting in it. The
-- tenants are found by a skip scan (one index probe per tenant, however long its backlog),
-- each gives its next `free` jobs, and a job's round is (the tenant's messages already in
-- flight + its rank among them) / the tenant's weight: lower rounds go first, so a tenant
-- with nothing in flight goes before one that fills the window. A tenant at its cap gives
-- nothing (its claim would be refused).
WITH RECURSIVE tenants AS (
    (SELECT tenant_id FROM jobs
     WHERE queue = %(queue)s AND status = 'scheduled' AND dispatched_at IS NULL
     ORDER BY queue, tenant_id LIMIT 1)
    UNION ALL
    SELECT (SELECT j.tenant_id FROM jobs AS j
            WHERE j.queue = %(queue)s AND j.status = 'scheduled' AND j.dispatched_at IS NULL
              AND j.tenant_id > t.tenant_id
            ORDER BY j.queue, j.tenant_id LIMIT 1)
    FROM tenants AS t WHERE t.tenant_id IS NOT NULL
),
flying AS (
    SELECT f.tenant_id, count(*) AS n
    FROM unnest(%(flying_tenants)s::text[]) AS f(tenant_id)
    GROUP BY f.tenant_id
),
picked AS (
    SELECT n.id, t.tenant_id, n.type, n.queue, n.priority, n.attempt, n.time_limit_seconds,
           (coalesce(flying.n, 0) + n.rank - 1) / coalesce(q.weight, 1) AS round
    FROM tenants AS t
    LEFT JOIN tenant_quotas AS q ON q.tenant_id = t.tenant_id
    LEFT JOIN flying ON flying.tenant_id = t.tenant_id
    CROSS JOIN LATERAL (
        SELECT id, type, queue, priority, attempt, time_limit_seconds,
               row_number() OVER (ORDER BY priority DESC, id) AS rank
        FROM jobs
        WHERE queue = %(queue)s AND tenant_id = t.tenant_id AND status = 'scheduled'
          AND dispatched_at IS NULL AND (not_before IS NULL OR not_before <= now())
        ORDER BY priority DESC, id
        LIMIT %(free)s
    ) AS n
    WHERE t.tenant_id IS NOT NULL
      AND (q.max_running IS NULL
           OR (SELECT count(*) FROM jobs AS l
               WHERE l.tenant_id = t.tenant_id AND l.status IN ('claimed', 'running'))
              < q.max_running)
)
SELECT id, tenant_id, type, queue, priority, attempt, time_limit_seconds FROM picked
ORDER BY round, priority DESC, id
LIMIT %(free)s
"""

TENANT_USAGE = """
-- name: tenant_usage  (ix_jobs_tenant_status_id; one index range per tenant and state)
-- What each tenant with a quota uses of it, and how many of its jobs wait without a message
-- (held back by its cap or a fair-shared queue).
SELECT q.tenant_id, q.max_queued, q.max_running, q.weight, q.updated_at,
       (SELECT count(*) FROM jobs WHERE tenant_id = q.tenant_id
          AND status IN ('pending', 'scheduled')) AS queued,
       (SELECT count(*) FROM jobs WHERE tenant_id = q.tenant_id
          AND status IN ('claimed', 'running')) AS running,
       (SELECT count(*) FROM jobs WHERE tenant_id = q.tenant_id
          AND status = 'scheduled' AND dispatched_at IS NULL) AS waiting
FROM tenant_quotas AS q
ORDER BY q.tenant_id
"""

FAIR_QUEUE_USAGE = """
-- name: fair_queue_usage  (ix_jobs_fair_undispatched, ix_jobs_runnable)
-- Per fair-shared queue: jobs waiting for the fill, and messages in flight.
SELECT f.queue, f.max_in_flight, f.updated_at,
       (SELECT count(*) FROM jobs WHERE queue = f.queue AND status = 'scheduled'
          AND dispatched_at IS NULL) AS waiting,
       (SELECT count(*) FROM jobs WHERE queue = f.queue AND status = 'scheduled'
          AND dispatched_at IS NOT NULL) AS in_flight
FROM fair_queues AS f
ORDER BY f.queue
"""
