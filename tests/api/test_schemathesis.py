"""Property-based conformance: schemathesis generates requests from ``/openapi.json``, valid
and invalid, and sends them with a valid key to a real server on loopback. No answer may be a
5xx, and every 4xx must be the error envelope.

Driven through hypothesis directly rather than schemathesis's pytest plugin, which does not
load under pytest 9. The event streams are left out: a valid stream stays open by design.
"""

from __future__ import annotations

import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from sqlalchemy import Engine, text

from tests.api.conftest import LiveServer, bearer, make_key

EXAMPLES = 25


def error_envelope(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    if 400 <= response.status_code < 500:
        body = json.loads(response.content)
        assert set(body) == {"code", "message", "hint", "retryable"}, body
        assert isinstance(body["code"], str) and isinstance(body["retryable"], bool)
    return None


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors_and_every_4xx_is_the_envelope(
    live: LiveServer, engine: Engine, mode: GenerationMode
) -> None:
    headers = {**bearer(make_key(engine, "acme", "jobs:read", "jobs:write")), "X-Tenant-Id": "acme"}
    raw = httpx.get(f"{live.url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(raw).exclude(path_regex=r"/events$")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        inputs = (operation.path_parameters, operation.query, operation.headers, operation.body)
        if mode is GenerationMode.NEGATIVE and not any(len(group) for group in inputs):
            continue  # nothing to get wrong

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def conforms(case: Case) -> None:
            response = case.call(base_url=live.url, headers=headers, timeout=30)
            case.validate_response(response, checks=[not_a_server_error, error_envelope])

        conforms()
    if mode is GenerationMode.POSITIVE:  # the valid requests did get through
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM jobs")).scalar_one() > 0
