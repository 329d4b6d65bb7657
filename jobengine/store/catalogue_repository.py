"""Reading and upserting ``job_types``. Nothing here runs per job: workers write at start, and
readers load the whole (small) table at most once per cache period."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, func, select, update
from sqlalchemy.dialects.postgresql import insert

from jobengine.job_types import JobTypeSpec
from jobengine.store.models import JobTypeRow

_types = cast(Table, JobTypeRow.__table__)


@dataclass(frozen=True, slots=True)
class StoredJobType:
    spec: JobTypeSpec
    declared_by: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Redefinition:
    """A type announced with a definition other than the stored one; the new one was kept."""

    name: str
    old_hash: str
    new_hash: str
    old_declared_by: str
    new_declared_by: str
    version: int


def _spec(row: Any) -> JobTypeSpec:
    return JobTypeSpec(
        name=row.name,
        queue=row.queue,
        retry_policy=dict(row.retry_policy),
        time_limit_seconds=row.time_limit_seconds,
        needs_network=row.needs_network,
        runs_commands=row.runs_commands,
        description=row.description,
        payload_schema=row.payload_schema,
        version=row.version,
    )


def _values(spec: JobTypeSpec) -> dict[str, Any]:
    return {
        "queue": spec.queue,
        "retry_policy": spec.retry_policy,
        "time_limit_seconds": spec.time_limit_seconds,
        "needs_network": spec.needs_network,
        "runs_commands": spec.runs_commands,
        "description": spec.description,
        "payload_schema": spec.payload_schema,
        "definition_hash": spec.definition_hash,
    }


class CatalogueRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def all(self) -> list[StoredJobType]:
        rows = self.conn.execute(select(_types).order_by(_types.c.name))
        return [StoredJobType(_spec(r), r.declared_by, r.updated_at) for r in rows]

    def upsert(self, specs: Sequence[JobTypeSpec], declared_by: str) -> list[Redefinition]:
        """Insert new types and overwrite changed ones (version bumped), in name order so two
        announcing workers lock rows in the same order; returns what was redefined."""
        ordered = sorted(specs, key=lambda s: s.name)
        if not ordered:
            return []
        self.conn.execute(
            insert(_types)
            .values([{"name": s.name, "declared_by": declared_by, **_values(s)} for s in ordered])
            .on_conflict_do_nothing(index_elements=["name"])
        )
        stored = {
            r.name: r
            for r in self.conn.execute(
                select(_types.c.name, _types.c.definition_hash, _types.c.declared_by)
                .where(_types.c.name.in_([s.name for s in ordered]))
                .order_by(_types.c.name)
                .with_for_update()
            )
        }
        changed: list[Redefinition] = []
        for spec in ordered:
            old = stored[spec.name]
            if old.definition_hash == spec.definition_hash:
                continue
            version: int = self.conn.execute(
                update(_types)
                .where(_types.c.name == spec.name)
                .values(
                    **_values(spec),
                    declared_by=declared_by,
                    version=_types.c.version + 1,
                    updated_at=func.now(),
                )
                .returning(_types.c.version)
            ).scalar_one()
            changed.append(
                Redefinition(
                    name=spec.name,
                    old_hash=old.definition_hash,
                    new_hash=spec.definition_hash,
                    old_declared_by=old.declared_by,
                    new_declared_by=declared_by,
                    version=version,
                )
            )
        return changed
