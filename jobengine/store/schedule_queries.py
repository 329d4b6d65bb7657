"""The schedules' statements, each named and served by an index (see ``jobengine.schedules``).

Per tick the leader reads due schedules (``ix_schedules_due``) and those holding a buffered
slot (``ix_schedules_buffered``), then per schedule locks its row, reads the state of its
last job or run, records the slots it decided and moves the schedule on, all by primary key.
The rest run when a user manages schedules or ``/metrics`` is scraped.
"""

from __future__ import annotations

FINAL = "('completed', 'failed', 'cancelled')"

_SPEC_COLUMNS = """tenant_id, project_id, name, cron, interval_seconds, zone, job_type, queue,
    payload, priority, retry_policy, time_limit_seconds, run_template, start_at, end_at,
    jitter_seconds, overlap, catch_up_seconds, paused, next_slot_at"""

_SPEC_VALUES = """%(tenant_id)s, %(project_id)s, %(name)s, %(cron)s, %(interval_seconds)s,
    %(zone)s, %(job_type)s, %(queue)s, %(payload)s::jsonb, %(priority)s,
    %(retry_policy)s::jsonb, %(time_limit_seconds)s, %(run_template)s::jsonb, %(start_at)s,
    %(end_at)s, %(jitter_seconds)s, %(overlap)s, %(catch_up_seconds)s, %(paused)s,
    %(next_slot_at)s"""

CREATE_SCHEDULE = f"""
-- name: create_schedule  (uq_schedules_tenant_id)
-- A name the tenant already uses in the project inserts nothing.
INSERT INTO schedules ({_SPEC_COLUMNS})
VALUES ({_SPEC_VALUES})
ON CONFLICT (tenant_id, project_id, name) DO NOTHING
RETURNING *
"""

UPDATE_SCHEDULE = f"""
-- name: update_schedule  (pk_schedules)
-- An edit replaces what the user asked for (a job or a run, the other emptied) and where the
-- next slot is; what the leader decided (last slot, its job or run, a buffered slot, the
-- counts) stays.
UPDATE schedules
SET ({_SPEC_COLUMNS}, updated_at) = ({_SPEC_VALUES}, now())
WHERE id = %(id)s
RETURNING *
"""

GET_SCHEDULE = """
-- name: get_schedule  (pk_schedules)
SELECT * FROM schedules WHERE id = %(id)s
"""

LOCK_SCHEDULE = """
-- name: lock_schedule  (pk_schedules)
-- The leader's tick and a user's edit of one schedule take turns.
SELECT * FROM schedules WHERE id = %(id)s FOR UPDATE
"""

LIST_SCHEDULES = """
-- name: list_schedules  (pk_schedules)
SELECT * FROM schedules WHERE id > %(after)s ORDER BY id LIMIT %(limit)s
"""

LIST_TENANT_SCHEDULES = """
-- name: list_tenant_schedules  (uq_schedules_tenant_id: its first column)
SELECT * FROM schedules
WHERE tenant_id = %(tenant_id)s AND id > %(after)s
ORDER BY id LIMIT %(limit)s
"""

DELETE_SCHEDULE = """
-- name: delete_schedule  (pk_schedules; its slot rows go with it, by their foreign key)
DELETE FROM schedules WHERE id = %(id)s RETURNING id
"""

DUE_SCHEDULES = """
-- name: due_schedules  (ix_schedules_due)
SELECT id FROM schedules
WHERE NOT paused AND next_slot_at IS NOT NULL AND next_slot_at <= %(now)s
ORDER BY next_slot_at, id
LIMIT %(limit)s
"""

BUFFERED_SCHEDULES = """
-- name: buffered_schedules  (ix_schedules_buffered)
SELECT id FROM schedules
WHERE NOT paused AND buffered_slot_at IS NOT NULL
ORDER BY id
LIMIT %(limit)s
"""

NEXT_SLOT = """
-- name: next_slot  (ix_schedules_due: its first entry)
SELECT min(next_slot_at) AS at FROM schedules WHERE NOT paused AND next_slot_at IS NOT NULL
"""

LAST_IS_FINAL = f"""
-- name: last_is_final  (pk_jobs, pk_runs)
-- Whether the last slot's job and run (whichever it made; none: NULL) are final. A job or run
-- retention deleted is as good as final.
SELECT coalesce((SELECT status IN {FINAL} FROM jobs WHERE id = %(job_id)s), true)
   AND coalesce((SELECT status IN {FINAL} FROM runs WHERE id = %(run_id)s), true) AS final
"""

RECORD_SLOTS = """
-- name: record_slots  (pk_schedule_slots)
-- The slots one tick decided for one schedule, in one statement. A slot decided before
-- violates the primary key: the tick's transaction rolls back and nothing is fired twice.
INSERT INTO schedule_slots (schedule_id, slot_at, outcome, reason, job_id, run_id)
SELECT %(schedule_id)s, slot_at, outcome, reason, job_id, run_id
FROM jsonb_to_recordset(%(slots)s::jsonb)
     AS s(slot_at timestamptz, outcome text, reason text, job_id bigint, run_id bigint)
"""

SETTLE_BUFFERED = """
-- name: settle_buffered  (pk_schedule_slots)
-- The buffered slot, once the job or run before it is final: fired, or skipped if what it
-- creates is refused.
UPDATE schedule_slots
SET outcome = %(outcome)s, reason = %(reason)s, job_id = %(job_id)s, run_id = %(run_id)s,
    decided_at = now()
WHERE schedule_id = %(schedule_id)s AND slot_at = %(slot_at)s::timestamptz
  AND outcome = 'buffered'
"""

ADVANCE_SCHEDULE = """
-- name: advance_schedule  (pk_schedules)
UPDATE schedules
SET next_slot_at = %(next_slot_at)s,
    last_slot_at = coalesce(%(last_slot_at)s, last_slot_at),
    last_job_id = CASE WHEN %(fired_any)s THEN %(last_job_id)s ELSE last_job_id END,
    last_run_id = CASE WHEN %(fired_any)s THEN %(last_run_id)s ELSE last_run_id END,
    buffered_slot_at = %(buffered_slot_at)s,
    fired_count = fired_count + %(fired)s,
    skipped_count = skipped_count + %(skipped)s,
    updated_at = now()
WHERE id = %(id)s
"""

LIST_SLOTS = """
-- name: list_slots  (pk_schedule_slots)
SELECT slot_at, outcome, reason, job_id, run_id, decided_at FROM schedule_slots
WHERE schedule_id = %(schedule_id)s AND slot_at < %(before)s
ORDER BY slot_at DESC
LIMIT %(limit)s
"""

SLOT_TOTALS = """
-- name: slot_totals  (a scan of schedules: one row per schedule, a small table)
SELECT coalesce(sum(fired_count), 0) AS fired, coalesce(sum(skipped_count), 0) AS skipped,
       count(*) FILTER (WHERE paused) AS paused, count(*) AS schedules
FROM schedules
"""
