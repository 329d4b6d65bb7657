"""The console in a real browser on a real fleet (issue 16's scenario): log in with a key,
filter to failed jobs, open one and see its exit code and timeline, bulk-replay the filter
with a dry run first, and watch the replayed jobs turn completed without a reload.

Screenshots of every page land in ``test-output/console/`` (see ``browser.SHOTS``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jobengine.api.app import CeleryRevoker, create_app, redis_check
from jobengine.domain.status import JobStatus
from jobengine.fleet import publisher_app
from tests.api.conftest import LiveServer, api_settings, bearer, make_key
from tests.console.browser import browser, screenshot  # noqa: F401  (fixture)
from tests.fleet.conftest import Fleet, broker_url, fleet, redis_server, wait_until  # noqa: F401

FAILING = {"command": "echo 'disk full on /scratch' >&2; exit 3"}
FAILED_JOBS = 3
WAIT = 60


@pytest.fixture
def fleet_console(fleet: Fleet) -> Iterator[LiveServer]:  # noqa: F811
    settings = api_settings(fleet.db_url, broker_url=fleet.broker_url, command_types_enabled=True)
    app = create_app(
        settings,
        engine=fleet.engine,
        publisher=fleet.publisher(),
        revoker=CeleryRevoker(publisher_app(settings, fleet.broker_url)),
        broker_check=redis_check(fleet.broker_url),
    )
    with LiveServer(app) as server:
        yield server


def _submit(api: httpx.Client, body: dict[str, Any]) -> int:
    answer = api.post("/api/v1/jobs", json=body)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


@pytest.mark.slow
def test_an_operator_finds_failed_jobs_and_replays_them_in_a_browser_without_reloading(
    fleet: Fleet,  # noqa: F811
    fleet_console: LiveServer,
    browser: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    fleet.start_worker("w1", concurrency=2)
    key = make_key(fleet.engine, "acme", "admin", name="operator")
    with httpx.Client(
        base_url=fleet_console.url, headers={**bearer(key), "X-Tenant-Id": "acme"}, timeout=60
    ) as api:
        failing = [
            _submit(
                api,
                {
                    "type": "shell",
                    "projectId": "ops",
                    "payload": FAILING,
                    "retryPolicy": {"maxRetries": 0},
                },
            )
            for _ in range(FAILED_JOBS)
        ]
        fine = _submit(api, {"type": "noop", "projectId": "ops"})
        run = api.post(
            "/api/v1/runs",
            json={
                "name": "nightly",
                "projectId": "ops",
                "jobs": [{"key": "extract", "type": "noop"}, {"key": "load", "type": "noop"}],
                "edges": [{"parent": "extract", "child": "load"}],
            },
        )
        assert run.status_code == 201, run.text
    wait_until(
        lambda: (
            all(fleet.job(i).status is JobStatus.FAILED for i in failing)
            and fleet.job(fine).status is JobStatus.COMPLETED
        ),
        WAIT,
        "the shell jobs failed for good and the noop completed",
    )
    base = fleet_console.url
    page = WebDriverWait(browser, WAIT)

    browser.get(f"{base}/console/jobs")  # not logged in: sent to the login page
    page.until(lambda d: d.find_elements(By.ID, "api-key"))
    screenshot(browser, "01-login")
    browser.find_element(By.ID, "api-key").send_keys(key)
    browser.find_element(By.ID, "login").click()
    page.until(lambda d: d.find_elements(By.ID, "jobs-table"))
    screenshot(browser, "02-jobs")

    browser.find_element(By.CSS_SELECTOR, 'input[name="status"][value="failed"]').click()
    browser.find_element(By.ID, "apply-filters").click()
    page.until(lambda d: "status=failed" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr[data-job-id]")
    assert sorted(int(r.get_attribute("data-job-id")) for r in rows) == sorted(failing)
    assert browser.find_element(By.CSS_SELECTOR, '[data-count="failed"]').text == str(FAILED_JOBS)
    screenshot(browser, "03-failed-jobs")

    rows[0].find_element(By.CSS_SELECTOR, "a.job-link").click()
    page.until(lambda d: d.find_elements(By.ID, "exit-code"))
    assert browser.find_element(By.ID, "exit-code").text == "3"
    assert "disk full on /scratch" in browser.find_element(By.ID, "stderr-tail").text
    timeline = browser.find_element(By.ID, "timeline").text
    assert all(step in timeline for step in ("scheduled", "claimed", "running", "failed"))
    screenshot(browser, "04-failed-job")

    browser.get(f"{base}/console/dlq?type=shell")
    page.until(lambda d: d.find_elements(By.ID, "bulk-replay"))
    screenshot(browser, "05-dead-letters")
    browser.find_element(By.ID, "payload-patch").send_keys('{"command": "echo fixed"}')
    browser.find_element(By.ID, "replay-note").send_keys("scratch disk cleaned")
    browser.find_element(By.ID, "dry-run").click()
    page.until(lambda d: d.find_elements(By.ID, "selected-count"))
    assert browser.find_element(By.ID, "selected-count").text == str(FAILED_JOBS)
    patched = browser.find_elements(By.CSS_SELECTOR, ".preview .patched")
    assert patched and all('"echo fixed"' in p.text for p in patched)
    assert all(fleet.job(i).status is JobStatus.FAILED for i in failing), "a dry run changed jobs"
    screenshot(browser, "06-dry-run")

    browser.find_element(By.ID, "replay-now").click()
    page.until(lambda d: d.find_elements(By.ID, "replayed-jobs"))
    assert browser.find_element(By.ID, "replayed-count").text == str(FAILED_JOBS)
    browser.execute_script("window.stillTheSamePage = true;")
    badges = '#replayed-jobs [data-job-status="{}"]'
    page.until(
        lambda d: all(
            d.find_element(By.CSS_SELECTOR, badges.format(i)).text == "completed" for i in failing
        )
    )
    assert browser.execute_script("return window.stillTheSamePage === true;")
    assert all(fleet.job(i).status is JobStatus.COMPLETED for i in failing)
    screenshot(browser, "07-replayed-live")

    replayed = fleet.history(failing[0])
    assert any(
        h.to_status is JobStatus.SCHEDULED and h.actor == f"api:operator ({key.split('_')[1]})"
        for h in replayed
    ), [(h.to_status, h.actor) for h in replayed]

    browser.get(f"{base}/console/jobs/{failing[0]}")
    page.until(lambda d: d.find_elements(By.ID, "timeline"))
    screenshot(browser, "08-replayed-job")
    run_id = run.json()["id"]
    browser.get(f"{base}/console/runs/{run_id}")
    page.until(lambda d: d.find_elements(By.ID, "run-graph"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#run-graph rect.node")) == 2
    screenshot(browser, "09-run")
    browser.get(f"{base}/console/runs")
    screenshot(browser, "10-runs")
    browser.get(f"{base}/console/fleet")
    page.until(lambda d: d.find_elements(By.ID, "workers"))
    assert "w1@" in browser.find_element(By.ID, "workers").text
    screenshot(browser, "11-fleet")
    browser.get(f"{base}/console/charts")
    page.until(lambda d: d.find_elements(By.CSS_SELECTOR, "figure.throughput svg"))
    screenshot(browser, "12-charts")
    browser.get(f"{base}/console/dlq/1")
    screenshot(browser, "13-dead-letter")


@pytest.mark.slow
def test_a_running_jobs_page_follows_it_to_completed_without_reloading(
    fleet: Fleet,  # noqa: F811
    fleet_console: LiveServer,
    browser: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    fleet.start_worker("w1")
    key = make_key(fleet.engine, "acme", "jobs:read", "jobs:write", name="watcher")
    with httpx.Client(
        base_url=fleet_console.url, headers={**bearer(key), "X-Tenant-Id": "acme"}, timeout=60
    ) as api:
        job_id = _submit(
            api, {"type": "blocking", "projectId": "ops", "payload": {"block_attempts": [1]}}
        )
    wait_until(lambda: fleet.job(job_id).status is JobStatus.RUNNING, WAIT, "the job runs")
    page = WebDriverWait(browser, WAIT)
    browser.get(f"{fleet_console.url}/console/login")
    browser.find_element(By.ID, "api-key").send_keys(key)
    browser.find_element(By.ID, "login").click()
    page.until(lambda d: d.find_elements(By.ID, "jobs-table"))
    browser.get(f"{fleet_console.url}/console/jobs/{job_id}")
    page.until(lambda d: d.find_element(By.ID, "live").is_displayed())
    assert browser.find_element(By.CSS_SELECTOR, f'h1 [data-job-status="{job_id}"]').text == (
        "running"
    )
    browser.execute_script("window.stillTheSamePage = true;")
    fleet.release(job_id, 1)
    page.until(
        lambda d: (
            d.find_element(By.CSS_SELECTOR, f'h1 [data-job-status="{job_id}"]').text == "completed"
        )
    )
    assert "completed" in browser.find_element(By.CSS_SELECTOR, "#timeline tbody").text
    assert browser.execute_script("return window.stillTheSamePage === true;")
    screenshot(browser, "14-job-followed-live")
