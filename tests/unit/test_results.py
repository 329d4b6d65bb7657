"""What a handler may return: JSON that Postgres stores as written, within the bound; anything
else is a non-retryable failure naming what was wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobengine.results import ResultNotStorable, ResultTooLarge, checked_result
from jobengine.retry_policy import RetryPolicy, error_names


def test_a_result_exactly_at_the_bound_is_kept_and_one_byte_over_is_refused() -> None:
    value = {"t": "x" * 100}
    size = len(json.dumps(value, separators=(",", ":")))
    assert checked_result(value, size) is value
    with pytest.raises(ResultTooLarge) as refused:
        checked_result(value, size - 1)
    assert refused.value.details == {
        "size_bytes": size,
        "max_bytes": size - 1,
        "hint": refused.value.details["hint"],
    }


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (float("nan"), "not JSON"),
        ({1: "a", "b": 2}, "not JSON"),
        ({"a": object()}, "not JSON"),
        ({"text": "nul \x00 inside"}, "NUL character"),
    ],
)
def test_a_result_postgres_would_refuse_fails_the_attempt_before_it_is_written(
    value: Any, why: str
) -> None:
    with pytest.raises(ResultNotStorable, match=why) as refused:
        checked_result(value)
    assert refused.value.code == "RESULT_NOT_JSON" and refused.value.details["hint"]


def test_text_that_only_looks_like_an_escaped_nul_is_kept() -> None:
    assert checked_result({"text": "\\u0000"}) == {"text": "\\u0000"}


def test_neither_refusal_is_ever_retried_by_the_default_policy() -> None:
    policy = RetryPolicy()
    for error in (ResultTooLarge("big"), ResultNotStorable("bad")):
        assert not policy.is_retryable(error_names(error))
