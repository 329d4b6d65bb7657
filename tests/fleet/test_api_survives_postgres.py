"""The API outlives its database: across a crash-like Postgres restart it answers the retryable
envelope (never a bare 500) while the server is away, and serves again by itself after."""

from __future__ import annotations

import httpx

from jobengine.api.keys import JOBS_READ, JOBS_WRITE
from tests.api.conftest import make_key
from tests.fleet.catalogue_support import TENANT, start_api
from tests.fleet.conftest import Fleet, PrivatePostgres, wait_until

JOB = {"type": "noop", "projectId": "p", "payload": {}}


def test_the_api_answers_retryable_503s_while_postgres_restarts_and_serves_again_after(
    private_pg: PrivatePostgres, private_fleet: Fleet
) -> None:
    key = make_key(private_pg.engine, TENANT, JOBS_READ, JOBS_WRITE)
    api = start_api(private_fleet, "api", key)
    assert api.post("/api/v1/jobs", JOB).status_code == 201

    private_pg.pg_ctl("-m", "immediate", "stop")
    answers: list[httpx.Response] = [api.post("/api/v1/jobs", JOB), api.get("/readyz")]
    private_pg.restart_immediately()

    def created() -> bool:
        answer = api.post("/api/v1/jobs", JOB)
        answers.append(answer)
        return answer.status_code == 201

    wait_until(created, 60, "the API creating jobs again")
    refused = [a for a in answers if a.status_code != 201 and a.status_code != 200]
    assert refused, "the API was asked while Postgres was down"
    assert {a.status_code for a in refused} == {503}
    assert all(a.json()["retryable"] is True for a in refused)
    assert api.proc.poll() is None
    assert api.get("/readyz").status_code == 200
