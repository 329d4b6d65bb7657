"""The statements of backfills and watermarks, each named with the index it uses.

Parameters use psycopg's ``%(name)s`` style; statements run through ``run_all``. Per tick the
leader runs, for each backfill still creating: ``lock_backfill``, ``settle_slots`` and
``open_slots`` (pacing), ``lock_source``, ``existing_slots``, ``insert_slots``,
``after_insert`` and ``advance_backfill`` (one batch); and for each source behind its last slot:
``slots_after`` and ``set_watermark``. None of them reads the jobs table but by primary key,
and a job's status is always a lookup per slot row, never a join: a statement is prepared once
per connection, and a join planned while the tables were nearly empty may be kept as a hash
join that scans every job (``tests/integration/test_backfill_plans.py`` counts the scans).
"""

from __future__ import annotations

SOURCE_COLUMNS = (
    "src.id, src.tenant_id, src.project_id, src.name, src.cron, src.interval_seconds, src.zone,"
    " src.watermark, src.held_at, src.last_slot, src.created_at, src.updated_at"
)

BACKFILL_COLUMNS = (
    "b.id, b.source_id, src.name AS source, src.tenant_id, src.project_id, src.cron,"
    " src.interval_seconds, src.zone, b.range_start, b.range_end, b.job_type, b.queue,"
    " b.priority, b.payload, b.max_in_flight, b.max_per_second, b.status, b.slots_total,"
    " b.slots_created, b.slots_existing, b.first_slot, b.last_slot, b.cursor, b.last_error,"
    " b.created_by, b.created_at, b.updated_at, b.finished_at"
)

UPSERT_SOURCE = f"""
-- name: upsert_source  (uq_backfill_sources_tenant_id)
-- The no-op update returns the row that exists and locks it: two backfills of one new
-- source made at once agree on one row and one cadence.
INSERT INTO backfill_sources AS src (tenant_id, project_id, name, cron, interval_seconds, zone)
VALUES (%(tenant_id)s, %(project_id)s, %(name)s, %(cron)s, %(interval_seconds)s, %(zone)s)
ON CONFLICT (tenant_id, project_id, name) DO UPDATE SET updated_at = src.updated_at
RETURNING {SOURCE_COLUMNS}
"""

FIND_SOURCE = f"""
-- name: find_source  (uq_backfill_sources_tenant_id)
SELECT {SOURCE_COLUMNS} FROM backfill_sources AS src
WHERE src.tenant_id = %(tenant_id)s AND src.project_id = %(project_id)s AND src.name = %(name)s
"""

LIST_SOURCES = f"""
-- name: list_sources  (uq_backfill_sources_tenant_id; pk_backfill_slots and the primary key
-- of jobs for the slot that holds each watermark, looked up, never joined)
SELECT {SOURCE_COLUMNS}, held.job_id AS held_by_job,
       (SELECT j.status::text FROM jobs AS j WHERE j.id = held.job_id) AS held_by_status
FROM backfill_sources AS src
LEFT JOIN LATERAL (
    SELECT s.job_id FROM backfill_slots AS s
    WHERE s.source_id = src.id AND s.slot_at = src.held_at
) AS held ON true
WHERE (%(tenant_id)s::text IS NULL OR src.tenant_id = %(tenant_id)s)
  AND (%(name)s::text IS NULL OR src.name = %(name)s)
ORDER BY src.tenant_id, src.project_id, src.name
LIMIT %(limit)s
"""

INSERT_BACKFILL = """
-- name: insert_backfill  (pk_backfills)
INSERT INTO backfills (source_id, range_start, range_end, job_type, queue, priority, payload,
                       max_in_flight, max_per_second, status, slots_total, first_slot,
                       last_slot, cursor, created_by, finished_at)
VALUES (%(source_id)s, %(start)s, %(end)s, %(job_type)s, %(queue)s, %(priority)s,
        %(payload)s::jsonb, %(max_in_flight)s, %(max_per_second)s, %(status)s, %(total)s,
        %(first)s, %(last)s, %(first)s, %(created_by)s,
        CASE WHEN %(status)s = 'creating' THEN NULL ELSE now() END)
RETURNING id
"""

GET_BACKFILL = f"""
-- name: get_backfill  (pk_backfills)
SELECT {BACKFILL_COLUMNS}
FROM backfills AS b JOIN backfill_sources AS src ON src.id = b.source_id
WHERE b.id = %(id)s AND (%(tenant_id)s::text IS NULL OR src.tenant_id = %(tenant_id)s)
"""

LIST_BACKFILLS = f"""
-- name: list_backfills  (pk_backfills, newest first; uq_backfill_sources_tenant_id)
SELECT {BACKFILL_COLUMNS}
FROM backfills AS b JOIN backfill_sources AS src ON src.id = b.source_id
WHERE (%(tenant_id)s::text IS NULL OR src.tenant_id = %(tenant_id)s)
  AND (%(source)s::text IS NULL OR src.name = %(source)s)
  AND (%(status)s::text IS NULL OR b.status = %(status)s)
  AND (%(before)s::bigint IS NULL OR b.id < %(before)s)
ORDER BY b.id DESC
LIMIT %(limit)s
"""

CREATING_BACKFILLS = """
-- name: creating_backfills  (ix_backfills_creating: only backfills still creating)
SELECT id FROM backfills WHERE status = 'creating' ORDER BY id LIMIT %(limit)s
"""

LOCK_BACKFILL = f"""
-- name: lock_backfill  (pk_backfills)
-- A batch and a cancel of one backfill take turns: a cancel that commits first is seen here.
SELECT {BACKFILL_COLUMNS}
FROM backfills AS b JOIN backfill_sources AS src ON src.id = b.source_id
WHERE b.id = %(id)s AND b.status = 'creating'
FOR UPDATE OF b
"""

SETTLE_SLOTS = """
-- name: settle_slots  (ix_backfill_slots_open; primary key of jobs, one lookup per open slot)
-- Record the outcome of the backfill's open slots whose jobs are final (or pruned), so they
-- leave the open index. A failed job a replay moves on later stays settled as failed here;
-- the watermark reads the job itself, so a replay still moves it.
WITH open AS (
    SELECT s.source_id, s.slot_at,
           coalesce((SELECT j.status::text FROM jobs AS j WHERE j.id = s.job_id), 'pruned')
               AS status
    FROM backfill_slots AS s
    WHERE s.backfill_id = %(backfill_id)s AND s.outcome IS NULL
)
UPDATE backfill_slots AS s SET outcome = open.status
FROM open
WHERE s.source_id = open.source_id AND s.slot_at = open.slot_at
  AND open.status IN ('completed', 'failed', 'cancelled', 'pruned')
"""

OPEN_SLOTS = """
-- name: open_slots  (ix_backfill_slots_open)
SELECT count(*) AS n FROM backfill_slots
WHERE backfill_id = %(backfill_id)s AND outcome IS NULL
"""

LOCK_SOURCE = """
-- name: lock_source  (pk_backfill_sources)
-- Every writer of a source's slots holds its row, so the existence check below is the truth.
SELECT id FROM backfill_sources WHERE id = %(source_id)s FOR UPDATE
"""

EXISTING_SLOTS = """
-- name: existing_slots  (pk_backfill_slots)
SELECT slot_at, job_id FROM backfill_slots
WHERE source_id = %(source_id)s AND slot_at = ANY(%(slots)s::timestamptz[])
"""

INSERT_SLOTS = """
-- name: insert_slots  (pk_backfill_slots)
INSERT INTO backfill_slots (source_id, slot_at, backfill_id, job_id)
SELECT %(source_id)s, s.slot_at, %(backfill_id)s, s.job_id
FROM unnest(%(slots)s::timestamptz[], %(job_ids)s::bigint[]) AS s(slot_at, job_id)
ON CONFLICT (source_id, slot_at) DO NOTHING
RETURNING slot_at
"""

AFTER_INSERT = """
-- name: after_insert  (pk_backfill_sources; pk_backfill_slots for the slot before)
-- New slots at or before the watermark put it back to the slot before the earliest of them:
-- every slot up to there completed, and nothing from there on is known to have.
UPDATE backfill_sources AS src
SET last_slot = GREATEST(src.last_slot, %(last)s),
    watermark = CASE WHEN src.watermark >= %(first)s THEN
        (SELECT max(s.slot_at) FROM backfill_slots AS s
         WHERE s.source_id = src.id AND s.slot_at < %(first)s)
        ELSE src.watermark END,
    updated_at = now()
WHERE src.id = %(source_id)s
"""

ADVANCE_BACKFILL = """
-- name: advance_backfill  (pk_backfills)
UPDATE backfills
SET cursor = %(cursor)s,
    slots_created = slots_created + %(created)s,
    slots_existing = slots_existing + %(existing)s,
    status = CASE WHEN %(cursor)s::timestamptz IS NULL THEN 'created' ELSE status END,
    finished_at = CASE WHEN %(cursor)s::timestamptz IS NULL THEN now() ELSE finished_at END,
    last_error = NULL,
    updated_at = now()
WHERE id = %(id)s AND status = 'creating'
"""

RECORD_ERROR = """
-- name: record_error  (pk_backfills)
UPDATE backfills SET last_error = %(error)s, updated_at = now()
WHERE id = %(id)s AND status = 'creating'
"""

CANCEL_BACKFILL = """
-- name: cancel_backfill  (pk_backfills)
UPDATE backfills
SET status = 'cancelled', finished_at = coalesce(finished_at, now()), updated_at = now()
WHERE id = %(id)s AND status <> 'cancelled'
RETURNING id
"""

QUEUED_JOBS_OF = """
-- name: queued_jobs_of  (ix_backfill_slots_open; primary key of jobs, one lookup per slot)
SELECT job_id FROM (
    SELECT s.job_id, (SELECT j.status::text FROM jobs AS j WHERE j.id = s.job_id) AS status
    FROM backfill_slots AS s
    WHERE s.backfill_id = %(backfill_id)s AND s.outcome IS NULL
) AS open
WHERE status IN ('pending', 'scheduled')
ORDER BY job_id
"""

PROGRESS = """
-- name: progress  (pk_backfill_slots: the range of one source; primary key of jobs, one
-- lookup per slot)
SELECT status, count(*) AS n FROM (
    SELECT coalesce((SELECT j.status::text FROM jobs AS j WHERE j.id = s.job_id), s.outcome,
                    'pruned') AS status
    FROM backfill_slots AS s
    WHERE s.source_id = %(source_id)s AND s.slot_at >= %(start)s AND s.slot_at < %(end)s
) AS slots
GROUP BY status
"""

EXISTING_IN_RANGE = """
-- name: existing_in_range  (pk_backfill_slots)
SELECT count(*) AS n FROM backfill_slots
WHERE source_id = %(source_id)s AND slot_at >= %(start)s AND slot_at < %(end)s
"""

SOURCES_BEHIND = """
-- name: sources_behind  (ix_backfill_sources_behind: only sources with slots past the mark)
SELECT id, cron, interval_seconds, zone, watermark, held_at FROM backfill_sources
WHERE last_slot IS NOT NULL AND watermark IS DISTINCT FROM last_slot
ORDER BY id
LIMIT %(limit)s
"""

SLOTS_AFTER = """
-- name: slots_after  (pk_backfill_slots; primary key of jobs, one lookup per slot)
SELECT s.slot_at,
       coalesce((SELECT j.status::text FROM jobs AS j WHERE j.id = s.job_id), s.outcome,
                'pruned') AS status
FROM backfill_slots AS s
WHERE s.source_id = %(source_id)s AND s.slot_at > %(after)s
ORDER BY s.slot_at
LIMIT %(limit)s
"""

SET_WATERMARK = """
-- name: set_watermark  (pk_backfill_sources)
-- Compare-and-set: a batch that put the watermark back meanwhile wins.
UPDATE backfill_sources
SET watermark = %(watermark)s, held_at = %(held_at)s, updated_at = now()
WHERE id = %(source_id)s AND watermark IS NOT DISTINCT FROM %(was)s
"""
