"""The console over plain HTTP: who may see and do what, CSRF, counts and filters."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from jobengine.console import views
from jobengine.domain.status import JobStatus
from jobengine.store.database import transaction
from jobengine.store.history_repository import JobHistoryRepository
from jobengine.store.jobs_repository import JobFilter, JobsRepository
from tests.api.conftest import LiveServer
from tests.console.conftest import Session, jobs_in, make_key

Login = Callable[[str], Session]


def test_a_page_without_a_session_sends_the_browser_to_the_login_page(live: LiveServer) -> None:
    import httpx

    answer = httpx.get(f"{live.url}/console/jobs", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login"


def test_login_refuses_an_unknown_key_and_says_why(live: LiveServer) -> None:
    import httpx

    answer = httpx.post(f"{live.url}/console/login", data={"apiKey": "je_nope"})
    assert answer.status_code == 401
    assert "unknown or revoked" in answer.text and "set-cookie" not in answer.headers


def test_the_session_cookie_is_http_only_and_same_site_strict(
    live: LiveServer, engine: Engine
) -> None:
    import httpx

    key = make_key(engine, "acme", "jobs:read")
    answer = httpx.post(f"{live.url}/console/login", data={"apiKey": key})
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie


def test_a_read_only_key_sees_the_job_but_no_action(engine: Engine, login: Login) -> None:
    [job] = jobs_in(engine, "acme")
    reader = login(make_key(engine, "acme", "jobs:read"))
    writer = login(make_key(engine, "acme", "jobs:read", "jobs:write"))
    read_page = reader.page(f"/console/jobs/{job.id}")
    assert read_page.status_code == 200 and f"Job {job.id}" in read_page.text
    assert 'id="cancel-job"' not in read_page.text and "read-only" in read_page.text
    assert 'id="cancel-job"' in writer.page(f"/console/jobs/{job.id}").text
    assert 'id="bulk-replay"' not in reader.page("/console/dlq").text


def test_a_refused_action_names_the_missing_scope_and_changes_nothing(
    engine: Engine, login: Login
) -> None:
    [job] = jobs_in(engine, "acme")
    reader = login(make_key(engine, "acme", "jobs:read"))
    answer = reader.post(f"/console/jobs/{job.id}/cancel", {"csrf": reader.csrf()})
    assert answer.status_code == 403
    assert "lacks the scope &#39;jobs:write&#39; (cancelling a job)" in answer.text
    assert "--scope jobs:write" in answer.text
    refused = reader.post("/console/dlq/replay", {"csrf": reader.csrf(), "type": "noop"})
    assert refused.status_code == 403 and "dlq:replay" in refused.text
    with transaction(engine) as conn:
        assert JobsRepository(conn).get(job.id).status is JobStatus.SCHEDULED


def test_an_action_without_the_session_csrf_token_is_refused(engine: Engine, login: Login) -> None:
    [job] = jobs_in(engine, "acme")
    writer = login(make_key(engine, "acme", "jobs:read", "jobs:write"))
    for token in ({}, {"csrf": "0" * 64}):
        answer = writer.post(f"/console/jobs/{job.id}/cancel", token)
        assert answer.status_code == 403 and "CSRF token" in answer.text
    with transaction(engine) as conn:
        assert JobsRepository(conn).get(job.id).status is JobStatus.SCHEDULED


def test_a_cancel_from_the_console_is_recorded_with_the_key_as_actor_as_rest_records_it(
    engine: Engine, login: Login
) -> None:
    [job] = jobs_in(engine, "acme")
    key = make_key(engine, "acme", "jobs:read", "jobs:write")
    writer = login(key)
    answer = writer.post(f"/console/jobs/{job.id}/cancel", {"csrf": writer.csrf()})
    assert answer.status_code == 303
    with transaction(engine) as conn:
        last = JobHistoryRepository(conn).for_job(job.id)[-1]
    assert last.to_status is JobStatus.CANCELLED
    assert last.actor == f"api:{key.split('_')[1]}"


def test_a_tenant_key_sees_only_its_own_tenants_jobs(engine: Engine, login: Login) -> None:
    ours = jobs_in(engine, "acme", 2)
    [theirs] = jobs_in(engine, "globex")
    acme = login(make_key(engine, "acme", "jobs:read"))
    listed = acme.page("/console/jobs").text
    assert all(f'href="/console/jobs/{j.id}"' in listed for j in ours)
    assert f'href="/console/jobs/{theirs.id}"' not in listed
    assert acme.page(f"/console/jobs/{theirs.id}").status_code == 404
    assert acme.page("/console/jobs?tenant=globex").status_code == 403
    assert acme.page("/console/fleet").status_code == 403
    admin = login(make_key(engine, "ops", "admin"))
    assert f'href="/console/jobs/{theirs.id}"' in admin.page("/console/jobs").text


def test_text_search_finds_jobs_by_a_substring_of_their_payload(
    engine: Engine, login: Login
) -> None:
    [needle] = jobs_in(engine, "acme", payload={"invoice": "INV-4711_x%"})
    [other] = jobs_in(engine, "acme", payload={"invoice": "INV-9"})
    acme = login(make_key(engine, "acme", "jobs:read"))
    found = acme.page("/console/jobs", q="inv-4711_x%").text
    assert f'href="/console/jobs/{needle.id}"' in found
    assert f'href="/console/jobs/{other.id}"' not in found
    none = acme.page("/console/jobs", q="4711%x").text  # % and _ are literal
    assert f'href="/console/jobs/{needle.id}"' not in none


def test_counts_are_exact_under_the_cap_and_labelled_estimates_above_it(
    engine: Engine, login: Login, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs_in(engine, "acme", 30)
    with transaction(engine) as conn:
        repo = JobsRepository(conn)
        exact = repo.count_in_states(JobFilter(tenant_id="acme"), cap=100, budget_ms=1000)
        capped = repo.count_in_states(JobFilter(tenant_id="acme"), cap=10, budget_ms=1000)
    assert exact[JobStatus.SCHEDULED].n == 30 and not exact[JobStatus.SCHEDULED].estimated
    assert capped[JobStatus.SCHEDULED].estimated and capped[JobStatus.SCHEDULED].n >= 11
    assert not capped[JobStatus.FAILED].estimated and capped[JobStatus.FAILED].n == 0
    monkeypatch.setattr(views, "EXACT_UP_TO", 10)
    page = login(make_key(engine, "acme", "jobs:read")).page("/console/jobs").text
    assert "≈ estimate" in page


def test_an_exact_count_that_runs_out_of_time_gives_way_to_the_estimate(engine: Engine) -> None:
    with transaction(engine) as conn:
        conn.exec_driver_sql(
            "INSERT INTO jobs (tenant_id, project_id, type, queue, payload, status, scheduled_at) "
            "SELECT 'bulk', 'p', 'noop', 'default', jsonb_build_object('n', i), 'scheduled', "
            "now() FROM generate_series(1, 50000) AS i"
        )
        conn.exec_driver_sql("ANALYZE jobs")
    with transaction(engine) as conn:
        counted = JobsRepository(conn).count_in_states(
            JobFilter(statuses=(JobStatus.SCHEDULED,), text="no such text"), cap=100, budget_ms=1
        )
        still_usable = conn.exec_driver_sql("SELECT 1").scalar_one()
    assert counted[JobStatus.SCHEDULED].estimated and still_usable == 1


def test_every_page_renders_for_an_admin_key(engine: Engine, login: Login) -> None:
    jobs_in(engine, "acme", 2)
    admin = login(make_key(engine, "ops", "admin"))
    for path in (
        "/console/jobs",
        "/console/dlq",
        "/console/runs",
        "/console/fleet",
        "/console/charts",
        "/console/charts?minutes=15",
    ):
        answer = admin.page(path)
        assert answer.status_code == 200, (path, answer.text[:500])


def test_the_jobs_page_lists_the_newest_first_and_pages_down_by_id(
    engine: Engine, login: Login, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobengine.console import routes_jobs as routes

    made = [j.id for j in jobs_in(engine, "acme", 5)]
    monkeypatch.setattr(routes, "PAGE", 2)
    acme = login(make_key(engine, "acme", "jobs:read"))
    seen: list[int] = []
    path = "/console/jobs"
    while path:
        text = acme.client.get(path).text
        seen += [int(i) for i in re.findall(r'<tr data-job-id="(\d+)"', text)]
        found = re.search(r'id="next-page" href="([^"]+)"', text)
        path = html.unescape(found.group(1)) if found else ""
    assert seen == sorted(made, reverse=True)


def test_logging_out_forgets_the_key(engine: Engine, login: Login) -> None:
    acme = login(make_key(engine, "acme", "jobs:read"))
    answer = acme.post("/console/logout", {"csrf": acme.csrf()})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    assert acme.page("/console/jobs").headers["location"] == "/console/login"


def test_the_estimate_takes_a_text_search_with_quotes_and_percent_signs(engine: Engine) -> None:
    jobs_in(engine, "acme", 3, payload={"note": "50% off 'today'"})
    with transaction(engine) as conn:
        guess = JobsRepository(conn).estimate(JobFilter(tenant_id="acme", text="50% off 'to"))
    assert guess >= 0


def test_a_login_posted_from_another_origin_is_refused(live: LiveServer, engine: Engine) -> None:
    import httpx

    key = make_key(engine, "acme", "jobs:read")
    answer = httpx.post(
        f"{live.url}/console/login", data={"apiKey": key}, headers={"Origin": "http://evil.test"}
    )
    assert answer.status_code == 403 and "another origin" in answer.text
    assert "set-cookie" not in answer.headers


def test_a_payload_is_shown_as_text_never_as_markup(engine: Engine, login: Login) -> None:
    [job] = jobs_in(engine, "acme", payload={"html": "<script>alert(1)</script>"})
    page = login(make_key(engine, "acme", "jobs:read")).page(f"/console/jobs/{job.id}").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)" in page
