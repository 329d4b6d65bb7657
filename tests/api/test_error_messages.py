"""Refusals that say what is wrong and where: a body that is not JSON, a body sent without
its JSON content type, a key repeated in one batch, a NUL character Postgres cannot store."""

from __future__ import annotations

import httpx

from tests.api.conftest import RecordingPublisher

JOB = b'{"type": "noop", "projectId": "p"}'


def test_a_body_that_is_not_json_is_refused_with_its_line_and_column(
    client: httpx.Client,
) -> None:
    response = client.post(
        "/api/v1/jobs",
        content=b'{"type": "noop",\n "projectId": p}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "INVALID_JSON"
    assert body["message"] == (
        "the request body is not valid JSON: expecting value at line 2, column 15 (character 31)"
    )
    assert "must be one JSON document" in body["hint"]


def test_a_body_without_the_json_content_type_says_the_header_is_missing_or_wrong(
    client: httpx.Client, publisher: RecordingPublisher
) -> None:
    missing = client.post("/api/v1/jobs", content=JOB)
    wrong = client.post("/api/v1/jobs", content=JOB, headers={"Content-Type": "text/plain"})
    assert (missing.status_code, wrong.status_code) == (415, 415)
    assert "without a Content-Type header" in missing.json()["message"]
    assert "sent as 'text/plain'" in wrong.json()["message"]
    for response in (missing, wrong):
        assert response.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"
        assert "Content-Type: application/json" in response.json()["hint"]
    assert publisher.sent == []
    typed = client.post(
        "/api/v1/jobs", content=JOB, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert typed.status_code == 201, typed.text


def test_a_key_repeated_in_one_batch_names_the_batch_and_the_indexes(
    client: httpx.Client, publisher: RecordingPublisher
) -> None:
    jobs = [
        {"type": "noop", "projectId": "p", "idempotencyKey": "k"},
        {"type": "noop", "projectId": "p"},
        {"type": "noop", "projectId": "q", "idempotencyKey": "k"},
    ]
    response = client.post("/api/v1/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "REPEATED_IDEMPOTENCY_KEY"
    assert body["message"] == "idempotency key 'k' is repeated in this batch, at jobs[0], jobs[2]"
    assert client.get("/api/v1/jobs").json()["items"] == [] and publisher.sent == []


def test_a_nul_character_in_a_payload_is_refused_naming_where_it_is(
    client: httpx.Client,
) -> None:
    body = {"type": "noop", "projectId": "p", "payload": {"lines": ["ok", "b\x00d"]}}
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 422
    message = response.json()["message"]
    assert message.startswith("payload: contains a NUL character (\\u0000) at payload.lines[1]")
    assert "Value error" not in message
