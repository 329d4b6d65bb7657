"""Dead letters over the console's HTTP: a tenant's page shows only its own entries, a dry run
changes nothing and previews the patched payload, a discard is recorded under the key."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from jobengine import guard
from jobengine.dead_letters import DeadLetters
from jobengine.domain.dead_letter import DeadLetterStatus
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.execution import Executor, describe_error
from jobengine.job_types import JobTypeRegistry, JobTypeSpec
from jobengine.store.database import transaction
from jobengine.store.jobs_repository import JobsRepository
from tests.console.conftest import Session, make_key

Login = Callable[[str], Session]


def dead_letter(engine: Engine, tenant: str, payload: dict[str, object]) -> tuple[int, int]:
    """A job of ``tenant`` that failed for good on its only attempt: (job id, entry id)."""
    types = JobTypeRegistry()
    types.register(JobTypeSpec("resize", retry_policy={"max_retries": 0}))
    executor = Executor(engine, lease_ttl_seconds=30, types=types)
    with transaction(engine) as conn:
        job = guard.create_job(
            conn, NewJob(type="resize", tenant_id=tenant, payload=payload), schedule=True
        )
    assert job is not None
    claim = executor.claim(job.id, "worker-1")
    assert claim is not None
    try:
        raise RuntimeError("thumbnail service down")
    except RuntimeError as exc:
        executor.record_outcome_of_failure(claim, exc, describe_error(exc))
    return job.id, DeadLetters(engine, types=types).id_for_job(job.id)


@pytest.fixture
def entries(engine: Engine) -> dict[str, tuple[int, int]]:
    return {
        "acme": dead_letter(engine, "acme", {"size": 64, "path": "/a.png"}),
        "globex": dead_letter(engine, "globex", {"size": 32}),
    }


def test_a_tenants_dead_letter_page_shows_only_its_own_entries(
    engine: Engine, login: Login, entries: dict[str, tuple[int, int]]
) -> None:
    acme = login(make_key(engine, "acme", "jobs:read"))
    page = acme.page("/console/dlq").text
    assert f'href="/console/dlq/{entries["acme"][1]}"' in page
    assert f'href="/console/dlq/{entries["globex"][1]}"' not in page
    assert acme.page(f"/console/dlq/{entries['globex'][1]}").status_code == 404


def test_a_dry_run_previews_the_count_and_the_patched_payload_and_changes_nothing(
    engine: Engine, login: Login, entries: dict[str, tuple[int, int]]
) -> None:
    admin = login(make_key(engine, "ops", "admin"))
    answer = admin.post(
        "/console/dlq/replay",
        {
            "csrf": admin.csrf(),
            "type": "resize",
            "payloadPatch": '{"size": 128, "path": null}',
            "action": "dry-run",
        },
    )
    assert answer.status_code == 200, answer.text
    assert '<span id="selected-count">2</span>' in answer.text
    assert "&#34;size&#34;: 128" in answer.text or '"size": 128' in answer.text
    with transaction(engine) as conn:
        jobs = JobsRepository(conn)
        assert all(jobs.get(j).status is JobStatus.FAILED for j, _ in entries.values())


def test_a_payload_patch_that_is_not_json_is_refused_naming_where(
    engine: Engine, login: Login, entries: dict[str, tuple[int, int]]
) -> None:
    admin = login(make_key(engine, "ops", "admin"))
    answer = admin.post(
        "/console/dlq/replay",
        {"csrf": admin.csrf(), "type": "resize", "payloadPatch": '{"size": ', "action": "dry-run"},
    )
    assert answer.status_code == 422 and "payloadPatch is not JSON" in answer.text
    assert "line 1 column 9" in answer.text  # of the patch as sent, trailing blank trimmed


def test_a_discard_from_the_console_closes_the_entry_under_the_keys_name(
    engine: Engine, login: Login, entries: dict[str, tuple[int, int]]
) -> None:
    key = make_key(engine, "acme", "jobs:read", "dlq:replay")
    acme = login(key)
    entry_id = entries["acme"][1]
    page = acme.page(f"/console/dlq/{entry_id}").text
    assert 'id="discard-one"' in page
    answer = acme.post(f"/console/dlq/{entry_id}/discard", {"csrf": acme.csrf()})
    assert answer.status_code == 303
    entry = DeadLetters(engine).get(entry_id)
    assert entry.status is DeadLetterStatus.DISCARDED
    assert entry.status_changed_by == f"api:{key.split('_')[1]}"


def test_the_status_filter_takes_all_and_refuses_an_unknown_status_by_name(
    engine: Engine, login: Login, entries: dict[str, tuple[int, int]]
) -> None:
    acme = login(make_key(engine, "acme", "jobs:read"))
    assert (
        f'href="/console/dlq/{entries["acme"][1]}"' in acme.page("/console/dlq", status="all").text
    )
    refused = acme.page("/console/dlq", status="lost")
    assert refused.status_code == 422 and "status &#39;lost&#39; is not one of open" in refused.text
