"""The migrations build, tear down and rebuild the schema, and build exactly the declared one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from jobengine import guard
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.store import migrate
from jobengine.store.database import make_engine, transaction
from jobengine.store.models import Base
from tests.conftest import _drop_database, _fresh_database

OUR_TABLES = set(Base.metadata.tables)
"""Every table the models declare; the migrations must build exactly these."""


@pytest.fixture
def empty_engine(empty_db_url: str) -> Iterator[Engine]:
    eng = make_engine(empty_db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def declared_engine(pg_admin_url: str) -> Iterator[Engine]:
    """A second empty database, built by ``Base.metadata.create_all`` (never by migrations)."""
    name, url = _fresh_database(pg_admin_url, None)
    eng = make_engine(url)
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()
    _drop_database(pg_admin_url, name)


def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(migrate.alembic_config())


def head() -> str:
    heads = scripts().get_heads()
    assert len(heads) == 1, f"migrations have several heads: {heads}"
    return heads[0]


def tables(conn: Connection) -> set[str]:
    return set(
        conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()
    )


def user_types(conn: Connection) -> set[str]:
    """Types we made: enums and anything else outside the catalogs (not row types of tables)."""
    return set(
        conn.execute(
            text(
                "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                "WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'r', 'm') "
            )
        ).scalars()
    )


def relations(conn: Connection) -> set[str]:
    """Every table, index, sequence and view left in the public schema."""
    return set(
        conn.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i', 'S', 'v', 'm', 'p')"
            )
        ).scalars()
    )


def enum_labels(conn: Connection) -> list[str]:
    return list(
        conn.execute(
            text(
                "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                "WHERE t.typname = 'job_status' ORDER BY e.enumsortorder"
            )
        ).scalars()
    )


def catalog(conn: Connection) -> dict[str, Any]:
    """What Postgres says the schema of our tables is, in its own words (for comparison)."""
    columns = conn.execute(
        text(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "       pg_get_expr(d.adbin, d.adrelid), a.attidentity "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE c.relname = ANY(:t) AND a.attnum > 0 AND NOT a.attisdropped"
        ),
        {"t": sorted(OUR_TABLES)},
    ).all()
    constraints = conn.execute(
        text(
            "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) "
            "FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
            "WHERE c.relname = ANY(:t)"
        ),
        {"t": sorted(OUR_TABLES)},
    ).all()
    indexes = conn.execute(
        text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(:t)"),
        {"t": sorted(OUR_TABLES)},
    ).all()
    return {
        "columns": {(r[0], r[1]): tuple(r[2:]) for r in columns},
        "constraints": {(r[0], r[1]): r[2] for r in constraints},
        "indexes": dict(indexes),
        "enum": enum_labels(conn),
    }


def test_upgrade_downgrade_upgrade_round_trip_leaves_no_trace(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine, "head")
    assert migrate.current_revision(empty_engine) == head()
    with empty_engine.connect() as conn:
        assert tables(conn) == OUR_TABLES | {"alembic_version"}
        assert "job_status" in user_types(conn)
        first = catalog(conn)

    migrate.downgrade(empty_engine, "base")
    assert migrate.current_revision(empty_engine) is None
    with empty_engine.connect() as conn:
        # Alembic keeps its (now empty) version table; nothing of ours survives.
        assert tables(conn) == {"alembic_version"}
        assert relations(conn) <= {"alembic_version", "alembic_version_pkc"}
        assert user_types(conn) == set()
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 0

    migrate.upgrade(empty_engine, "head")
    assert migrate.current_revision(empty_engine) == head()
    with empty_engine.connect() as conn:
        assert catalog(conn) == first
    # The rebuilt schema works: a job goes in through the guard with its history and event.
    with transaction(empty_engine) as conn:
        job = guard.create_job(conn, NewJob(type="noop"), schedule=True)
        assert job is not None and job.status is JobStatus.SCHEDULED
        assert conn.execute(text("SELECT count(*) FROM job_events")).scalar_one() == 1


def test_every_revision_downgrades_and_upgrades_again_one_step_at_a_time(
    empty_engine: Engine,
) -> None:
    revisions = list(reversed(list(scripts().walk_revisions("base", "heads"))))
    assert revisions, "no migrations found"
    with empty_engine.connect() as conn:
        snapshots: list[set[str]] = [relations(conn)]
    for rev in revisions:
        migrate.upgrade(empty_engine, rev.revision)
        with empty_engine.connect() as conn:
            after_up = relations(conn)
        down = rev.down_revision
        assert down is None or isinstance(down, str), "merge revisions are not expected"
        migrate.downgrade(empty_engine, down or "base")
        with empty_engine.connect() as conn:
            assert relations(conn) - {"alembic_version", "alembic_version_pkc"} == (
                snapshots[-1] - {"alembic_version", "alembic_version_pkc"}
            ), f"downgrade of {rev.revision} left something behind"
        migrate.upgrade(empty_engine, rev.revision)
        with empty_engine.connect() as conn:
            assert relations(conn) == after_up
        snapshots.append(after_up)
    assert migrate.current_revision(empty_engine) == head()


def test_migrated_schema_matches_models_according_to_autogenerate(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine, "head")
    with empty_engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_migrated_catalog_equals_the_catalog_create_all_builds_from_models(
    empty_engine: Engine, declared_engine: Engine
) -> None:
    """What autogenerate does not compare (check constraints, partial-index predicates, enum
    labels, identity columns) compared in Postgres's own rendering of both schemas."""
    migrate.upgrade(empty_engine, "head")
    with empty_engine.connect() as migrated, declared_engine.connect() as declared:
        got, want = catalog(migrated), catalog(declared)
    for part in ("columns", "constraints", "indexes", "enum"):
        assert got[part] == want[part], part


def test_job_status_enum_lists_the_domain_states_in_order(engine: Engine) -> None:
    with engine.connect() as conn:
        assert enum_labels(conn) == [s.value for s in JobStatus]


def test_jobs_that_failed_before_dead_letters_existed_get_their_entry(
    empty_engine: Engine,
) -> None:
    migrate.upgrade(empty_engine, "0006")
    with empty_engine.begin() as conn:
        job_id = conn.execute(
            text(
                "INSERT INTO jobs (tenant_id, project_id, type, payload, status, attempt, "
                "last_error, completed_at) VALUES ('t', 'p', 'noop', '{\"n\": 1}', 'failed', 2, "
                '\'{"code": "NON_RETRYABLE", "class": "x.Bad", "message": "no"}\', '
                "now()) RETURNING id"
            )
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO job_history (job_id, from_status, to_status, actor, attempt) "
                "VALUES (:j, NULL, 'pending', 'p', 0), (:j, 'running', 'failed', 'w', 2)"
            ),
            {"j": job_id},
        )
        conn.execute(
            text(
                "INSERT INTO jobs (tenant_id, project_id, type, payload, status) "
                "VALUES ('t', 'p', 'noop', '{}', 'scheduled')"
            )
        )
    migrate.upgrade(empty_engine, "head")
    with empty_engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT job_id, reason, error_class, attempts, payload, status, "
                "jsonb_array_length(timeline) FROM dead_letters"
            )
        ).all()
    assert [tuple(r) for r in rows] == [(job_id, "non_retryable", "x.Bad", 2, {"n": 1}, "open", 2)]
