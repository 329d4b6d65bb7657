"""The artifacts' rows: attached under the attempt's fence, read per job and per run.

Every statement is named and served by an index (``uq_artifacts_job_id`` on (job_id, name),
``ix_artifacts_run_id_id``, ``pk_jobs``). Attaching is one statement, so it runs
in autocommit on the worker's shared connection.
"""

from __future__ import annotations

from sqlalchemy import Connection

from jobengine.artifacts.model import Artifact
from jobengine.store.database import run_all, run_statement

COLUMNS = (
    "a.id, a.tenant_id, a.job_id, a.run_id, a.name, a.content_type, a.size_bytes, a.sha256, "
    "a.storage_key, a.created_at"
)

ATTACH = f"""
-- name: attach_artifact  (pk_jobs; uq_artifacts_job_id)
-- Written only while the attempt's lease token still holds the running job: the job row is
-- share-locked, so a concurrent move of it (lease expired, cancel) either waits for this or
-- makes the fence refuse. The same name again replaces the row; the key it replaced is
-- returned so its bytes can be deleted once this has committed.
WITH holder AS (
    SELECT id, tenant_id, run_id FROM jobs
    WHERE id = %(job_id)s AND lease_token = %(lease_token)s AND status = 'running'
    FOR SHARE
),
previous AS (
    SELECT a.storage_key FROM artifacts AS a JOIN holder ON a.job_id = holder.id
    WHERE a.name = %(name)s
),
kept AS (
    INSERT INTO artifacts AS a
        (tenant_id, job_id, run_id, name, content_type, size_bytes, sha256, storage_key)
    SELECT tenant_id, id, run_id, %(name)s, %(content_type)s, %(size_bytes)s, %(sha256)s,
           %(storage_key)s
    FROM holder
    ON CONFLICT (job_id, name) DO UPDATE
        SET content_type = EXCLUDED.content_type, size_bytes = EXCLUDED.size_bytes,
            sha256 = EXCLUDED.sha256, storage_key = EXCLUDED.storage_key, created_at = now()
    RETURNING {COLUMNS}
)
SELECT kept.*, (SELECT storage_key FROM previous) AS replaced_key FROM kept
"""

OF_JOB = f"""
-- name: artifacts_of_job  (uq_artifacts_job_id)
SELECT {COLUMNS} FROM artifacts AS a WHERE a.job_id = %(job_id)s ORDER BY a.name
"""

ONE = f"""
-- name: artifact_by_name  (uq_artifacts_job_id)
SELECT {COLUMNS} FROM artifacts AS a WHERE a.job_id = %(job_id)s AND a.name = %(name)s
"""

OF_RUN = f"""
-- name: artifacts_of_run  (ix_artifacts_run_id_id)
SELECT {COLUMNS} FROM artifacts AS a WHERE a.run_id = %(run_id)s ORDER BY a.id
"""


class ArtifactsRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def attach(
        self,
        *,
        job_id: int,
        lease_token: int,
        name: str,
        content_type: str,
        size_bytes: int,
        sha256: str,
        storage_key: str,
    ) -> tuple[Artifact, str | None] | None:
        """The row as written and the storage key it replaced (None: a new name); None when
        the fence refused (the token no longer holds the running job)."""
        row = run_statement(
            self._conn,
            ATTACH,
            {
                "job_id": job_id,
                "lease_token": lease_token,
                "name": name,
                "content_type": content_type,
                "size_bytes": size_bytes,
                "sha256": sha256,
                "storage_key": storage_key,
            },
        )
        if row is None:
            return None
        return Artifact.of(row), row["replaced_key"]

    def of_job(self, job_id: int) -> list[Artifact]:
        return [Artifact.of(r) for r in run_all(self._conn, OF_JOB, {"job_id": job_id})]

    def get(self, job_id: int, name: str) -> Artifact | None:
        row = run_statement(self._conn, ONE, {"job_id": job_id, "name": name})
        return None if row is None else Artifact.of(row)

    def of_run(self, run_id: int) -> list[Artifact]:
        return [Artifact.of(r) for r in run_all(self._conn, OF_RUN, {"run_id": run_id})]
