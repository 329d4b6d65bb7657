"""Bodies over the cap are refused with 413 in the envelope, declared or streamed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
from sqlalchemy import Engine

from jobengine.api.app import create_app
from tests.api.conftest import LiveServer, RecordingPublisher, api_settings, bearer, make_key


def test_bodies_over_the_cap_are_refused_in_the_envelope(db_url: str, engine: Engine) -> None:
    app = create_app(
        api_settings(db_url, api_max_body_bytes=2000),
        engine=engine,
        publisher=RecordingPublisher(),
        revoker=None,
        broker_check=lambda: None,
    )
    headers = {
        **bearer(make_key(engine, "acme", "jobs:read", "jobs:write")),
        "X-Tenant-Id": "acme",
        "Content-Type": "application/json",
    }
    small = b'{"type": "noop", "projectId": "p"}'
    big = b'{"type": "noop", "projectId": "p", "payload": {"x": "' + b"a" * 5000 + b'"}}'

    def streamed() -> Iterator[bytes]:  # no Content-Length: chunked
        for start in range(0, len(big), 500):
            yield big[start : start + 500]

    with LiveServer(app) as live, httpx.Client(base_url=live.url, headers=headers) as c:
        assert c.post("/api/v1/jobs", content=small).status_code == 201
        for response in (
            c.post("/api/v1/jobs", content=big),
            c.post("/api/v1/jobs", content=streamed()),
        ):
            assert response.status_code == 413
            body = response.json()
            assert body["code"] == "PAYLOAD_TOO_LARGE" and "2000 bytes" in body["message"]
            assert set(body) == {"code", "message", "hint", "retryable"}
        assert c.get("/api/v1/jobs").json()["items"][0]["payload"] == {}
