"""The audit log's statements, each named and served by an index (migration 0017).

An entry is written once per operator act, not per job: ``insert_entry`` and, when the act
touched jobs, one ``insert_entry_jobs`` for all of them. Listing is newest first by id, each
filter served by an index that leads with it and ends in ``id``.
"""

from __future__ import annotations

INSERT_ENTRY = """
-- name: insert_entry  (pk_audit_entries)
INSERT INTO audit_entries
    (actor, surface, action, object_kind, object_id, tenant, client_addr, outcome, reason, detail)
VALUES
    (%(actor)s, %(surface)s, %(action)s, %(object_kind)s, %(object_id)s, %(tenant)s,
     %(client_addr)s, %(outcome)s, %(reason)s, %(detail)s)
RETURNING id, at
"""

INSERT_ENTRY_JOBS = """
-- name: insert_entry_jobs  (pk_audit_entry_jobs)
INSERT INTO audit_entry_jobs (entry_id, job_id)
SELECT %(entry_id)s, j FROM unnest(%(job_ids)s::bigint[]) AS j
ON CONFLICT DO NOTHING
"""

ENTRY_COLUMNS = (
    "e.id, e.at, e.actor, e.surface, e.action, e.object_kind, e.object_id, e.tenant, "
    "e.client_addr, e.outcome, e.reason, e.detail"
)

LIST_FILTERS = {
    "tenant": "e.tenant = %(tenant)s",  # ix_audit_entries_tenant_id
    "actor": "e.actor = %(actor)s",  # ix_audit_entries_actor_id
    "action": "e.action = %(action)s",  # ix_audit_entries_action_id
    "object_kind": "e.object_kind = %(object_kind)s",  # ix_audit_entries_object_kind_..._id
    "object_id": "e.object_id = %(object_id)s",
    "outcome": "e.outcome = %(outcome)s",
    "since": "e.at >= %(since)s",  # ix_audit_entries_at
    "until": "e.at < %(until)s",
    "job_id": (  # pk_audit_entry_jobs (job_id, entry_id)
        "e.id IN (SELECT entry_id FROM audit_entry_jobs WHERE job_id = %(job_id)s)"
    ),
    "before_id": "e.id < %(before_id)s",
}
"""One fragment per filter; ``list_entries`` ANDs the ones a request sets."""

LIST_ENTRIES = """
-- name: list_entries  (the index of the most selective filter set, else pk_audit_entries)
SELECT {columns}
FROM audit_entries AS e
WHERE {where}
ORDER BY e.id DESC
LIMIT %(limit)s
"""

JOBS_OF_ENTRIES = """
-- name: jobs_of_entries  (ix_audit_entry_jobs_entry_id: entry_id, job_id)
SELECT e.entry_id, j.job_id
FROM unnest(%(entry_ids)s::bigint[]) AS e(entry_id)
CROSS JOIN LATERAL (
    SELECT job_id FROM audit_entry_jobs
    WHERE entry_id = e.entry_id ORDER BY job_id LIMIT %(per_entry)s
) AS j
ORDER BY e.entry_id, j.job_id
"""
"""The first jobs of each listed entry: a bulk replay may name a million; the ``job_id``
filter finds every entry of one job instead."""

DELETE_EXPIRED = """
-- name: delete_expired  (ix_audit_entries_at; cascades through ix_audit_entry_jobs_entry_id)
DELETE FROM audit_entries
WHERE id IN (SELECT id FROM audit_entries WHERE at < %(before)s ORDER BY at LIMIT %(batch)s)
"""
