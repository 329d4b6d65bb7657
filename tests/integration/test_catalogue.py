"""The catalogue in Postgres: announcing, redefining, caching, and judging payloads by the
stored JSON Schema in a process that has no handler for the type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import structlog
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, text

from jobengine.catalogue import Catalogue, announce
from jobengine.domain.job import NewJob
from jobengine.errors import MalformedPayloadSchema, PayloadInvalid, UnknownJobType
from jobengine.job_types import BUILTINS, JobTypeSpec
from jobengine.store.database import transaction
from jobengine.submission import submit


class Resize(BaseModel):
    width: int = Field(ge=1)
    height: int | None = None


class Bad(BaseModel):
    model_config = ConfigDict(json_schema_extra={"type": 12})

    x: int


def resize(**overrides: Any) -> JobTypeSpec:
    values: dict[str, Any] = {
        "name": "resize",
        "queue": "images",
        "retry_policy": {"max_retries": 2},
        "payload_model": Resize,
    }
    values.update(overrides)
    return JobTypeSpec(**values)


def stored(engine: Engine, name: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = (
            conn.execute(text("SELECT * FROM job_types WHERE name = :n"), {"n": name})
            .mappings()
            .one()
        )
    return dict(row)


def test_an_announced_type_is_stored_with_its_schema_and_hash_at_version_one(
    engine: Engine,
) -> None:
    spec = resize()
    assert announce(engine, [spec], "worker-a") == []
    row = stored(engine, "resize")
    assert row["payload_schema"] == spec.payload_schema
    assert row["definition_hash"] == spec.definition_hash and row["version"] == 1
    assert row["queue"] == "images" and row["declared_by"] == "worker-a"


def test_the_same_definition_announced_again_changes_nothing(engine: Engine) -> None:
    announce(engine, [resize()], "worker-a")
    before = stored(engine, "resize")
    assert announce(engine, [resize()], "worker-b") == []
    assert stored(engine, "resize") == before


def test_a_changed_definition_wins_bumps_the_version_and_logs_both_hashes(
    engine: Engine,
) -> None:
    old, new = resize(), resize(retry_policy={"max_retries": 7})
    announce(engine, [old], "worker-a")
    with structlog.testing.capture_logs() as logs:
        [change] = announce(engine, [new], "worker-b")
    row = stored(engine, "resize")
    assert row["version"] == 2 and row["definition_hash"] == new.definition_hash
    assert row["retry_policy"] == {"max_retries": 7} and row["declared_by"] == "worker-b"
    [event] = [e for e in logs if e["event"] == "job_type_redefined"]
    assert (event["old_hash"], event["new_hash"]) == (old.definition_hash, new.definition_hash)
    assert (event["old_declared_by"], event["new_declared_by"]) == ("worker-a", "worker-b")
    assert change.version == 2


def test_a_malformed_schema_is_refused_naming_the_type_and_nothing_is_written(
    engine: Engine,
) -> None:
    with pytest.raises(MalformedPayloadSchema, match="job type 'broken'"):
        announce(engine, [resize(), JobTypeSpec("broken", payload_model=Bad)], "worker-a")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM job_types")).scalar_one() == 0


def test_the_catalogue_knows_the_builtins_before_any_worker_announced(engine: Engine) -> None:
    catalogue = Catalogue(engine)
    assert catalogue.names() == sorted(b.name for b in BUILTINS)
    assert catalogue.get("shell").runs_commands


def test_a_type_announced_after_the_cache_was_read_is_found_on_the_first_miss(
    engine: Engine,
) -> None:
    catalogue = Catalogue(engine, ttl_seconds=3600)
    with pytest.raises(UnknownJobType, match="'resize': not in the catalogue") as refused:
        catalogue.get("resize")
    assert "noop" in refused.value.hint and "must announce it" in refused.value.hint
    announce(engine, [resize()], "worker-a")
    assert catalogue.get("resize").queue == "images"


def test_a_redefinition_is_seen_once_the_cache_expires(engine: Engine) -> None:
    announce(engine, [resize()], "worker-a")
    catalogue = Catalogue(engine, ttl_seconds=0)
    assert catalogue.get("resize").version == 1
    announce(engine, [resize(queue="gpu")], "worker-b")
    assert catalogue.get("resize").queue == "gpu"
    assert catalogue.get("resize").version == 2


def test_a_submission_is_judged_by_the_stored_schema_without_the_model(engine: Engine) -> None:
    announce(engine, [resize()], "worker-a")
    nameless = Catalogue(engine)
    assert nameless.get("resize").payload_model is None
    with transaction(engine) as conn:
        with pytest.raises(PayloadInvalid, match="width: 0 is less than the minimum of 1"):
            submit(conn, NewJob(type="resize", payload={"width": 0}), types=nameless)
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 0
        job, _ = submit(conn, NewJob(type="resize", payload={"width": 3}), types=nameless)
    assert job.queue == "images"


def test_submit_reads_the_catalogue_through_the_callers_connection_by_default(
    engine: Engine,
) -> None:
    announce(engine, [resize(name="thumbnail")], "worker-a")
    with transaction(engine) as conn:
        job, created = submit(conn, NewJob(type="thumbnail", payload={"width": 5}))
        with pytest.raises(PayloadInvalid, match="width"):
            submit(conn, NewJob(type="thumbnail", payload={"width": "wide"}))
    assert created and job.queue == "images"


def test_a_type_read_back_from_the_catalogue_has_the_hash_it_was_announced_with(
    engine: Engine,
) -> None:
    spec = resize(
        time_limit_seconds=30,
        retry_policy={"max_retries": 2, "base_delay_seconds": 0.25, "retry_on": ["OSError"]},
        needs_network=True,
        description="Resizes — ünïcode too.",
    )
    announce(engine, [spec], "worker-a")
    read = Catalogue(engine).get("resize")
    assert read.definition_hash == spec.definition_hash
    assert announce(engine, [read], "worker-b") == []


def test_a_model_pydantic_cannot_express_as_json_schema_is_refused_naming_the_type() -> None:
    class Unrepresentable(BaseModel):
        render: Callable[[int], str]

    with pytest.raises(MalformedPayloadSchema, match=r"job type 'render'.*CallableSchema"):
        JobTypeSpec("render", payload_model=Unrepresentable)
