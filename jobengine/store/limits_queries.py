"""The rate limits' statements, each named and served by an index (see ``jobengine.limits``).

``take_slots`` runs in every submission a limit applies to, once for a whole batch; the rest
run when an operator changes a limit, when a process refreshes its copy of the limits, or
when ``/metrics`` is scraped.
"""

from __future__ import annotations

_SECONDS_PER_TOKEN = (
    "(CASE l.per WHEN 'second' THEN 1.0 WHEN 'minute' THEN 60.0 ELSE 3600.0 END / l.rate)"
)

TAKE_SLOTS = f"""
-- name: take_slots  (pk_rate_limits, pk_rate_limit_buckets)
-- GCRA for a batch, one statement whatever its size. Each wanted row is one job (by its
-- ordinal in the batch) drawing `units` from one bucket. Per bucket, the batch's units are
-- added to the theoretical arrival time (TAT) at once; a job's own TAT is the bucket's as it
-- was plus the units of the jobs before it and its own (the running sum over the ordinal),
-- and its slot is when that TAT lies no more than the bucket's capacity ahead: now, or later.
-- Buckets are upserted in (limit, key) order, so two batches never deadlock; the row lock is
-- held to the submission's commit, so no two transactions book the same slot. Rates come
-- from the table, not the caller's cache: a limit deleted since is simply not taken.
WITH wanted AS (
    SELECT w.ord, w.limit_name, w.key, w.units * {_SECONDS_PER_TOKEN} AS cost,
           l.burst * {_SECONDS_PER_TOKEN} AS capacity
    FROM jsonb_to_recordset(%(wanted)s::jsonb) AS w(ord int, limit_name text, key text, units int)
    JOIN rate_limits AS l ON l.name = w.limit_name
),
booked AS (
    SELECT ord, limit_name, key, capacity,
           sum(cost) OVER (PARTITION BY limit_name, key) -
           sum(cost) OVER (PARTITION BY limit_name, key ORDER BY ord) AS after_it
    FROM wanted
),
advanced AS (
    INSERT INTO rate_limit_buckets AS b (limit_name, key, tat)
    SELECT limit_name, key, now() + make_interval(secs => sum(cost))
    FROM wanted
    GROUP BY limit_name, key
    ORDER BY limit_name, key
    ON CONFLICT (limit_name, key) DO UPDATE
    SET tat = greatest(b.tat, now()) + (EXCLUDED.tat - now())
    RETURNING b.limit_name, b.key, b.tat
),
slots AS (
    SELECT booked.ord, booked.limit_name, booked.key,
           greatest(now(), advanced.tat - make_interval(secs => booked.after_it + booked.capacity))
               AS slot
    FROM booked JOIN advanced USING (limit_name, key)
)
SELECT ord, limit_name, key, slot, slot > now() AS waits FROM slots ORDER BY ord, slot DESC
"""

LIST_LIMITS = """
-- name: list_limits  (pk_rate_limits; a handful of rows)
SELECT name, scope, job_type, key_path, rate, per, burst, units, units_path, created_at,
       updated_at
FROM rate_limits ORDER BY name
"""

GET_LIMIT = """
-- name: get_limit  (pk_rate_limits)
SELECT name, scope, job_type, key_path, rate, per, burst, units, units_path, created_at,
       updated_at
FROM rate_limits WHERE name = %(name)s
"""

SET_LIMIT = """
-- name: set_limit  (pk_rate_limits)
-- A changed limit keeps its buckets: slots already taken stay as booked, and the new rate and
-- burst apply to every slot taken from now on.
INSERT INTO rate_limits AS l (name, scope, job_type, key_path, rate, per, burst, units,
                              units_path)
VALUES (%(name)s, %(scope)s, %(job_type)s, %(key_path)s, %(rate)s, %(per)s, %(burst)s,
        %(units)s, %(units_path)s)
ON CONFLICT (name) DO UPDATE
SET scope = EXCLUDED.scope, job_type = EXCLUDED.job_type, key_path = EXCLUDED.key_path,
    rate = EXCLUDED.rate, per = EXCLUDED.per, burst = EXCLUDED.burst, units = EXCLUDED.units,
    units_path = EXCLUDED.units_path, updated_at = now()
RETURNING name, scope, job_type, key_path, rate, per, burst, units, units_path, created_at,
          updated_at
"""

DELETE_LIMIT = """
-- name: delete_limit  (pk_rate_limits; its buckets go with it, by their foreign key)
DELETE FROM rate_limits WHERE name = %(name)s RETURNING name
"""

LIMIT_STATUS = f"""
-- name: limit_status  (pk_rate_limits, ix_rate_limit_buckets_tat)
-- Per limit, from its busy buckets only (TAT ahead of now; an idle bucket is a full one):
-- the whole tokens its emptiest bucket has now, the units booked beyond the buckets'
-- capacity (jobs waiting, when each costs one token) and the next admission among them
-- (reckoned in single tokens). Reads as many rows as buckets are busy, whatever the history.
WITH busy AS (
    SELECT l.name, {_SECONDS_PER_TOKEN} AS per_token,
           extract(epoch FROM b.tat - now()) / {_SECONDS_PER_TOKEN} - l.burst AS beyond
    FROM rate_limits AS l
    JOIN rate_limit_buckets AS b ON b.limit_name = l.name AND b.tat > now()
)
SELECT l.name, l.burst,
       coalesce(min(greatest(0, floor(-busy.beyond))) FILTER (WHERE busy.name IS NOT NULL),
                l.burst)::bigint AS tokens,
       coalesce(sum(greatest(0, ceil(busy.beyond))), 0)::bigint AS waiting,
       min(CASE WHEN busy.beyond > 0 THEN now() + make_interval(
               secs => (busy.beyond - ceil(busy.beyond) + 1) * busy.per_token) END)
           AS next_admission
FROM rate_limits AS l LEFT JOIN busy ON busy.name = l.name
GROUP BY l.name, l.burst
ORDER BY l.name
"""
