"""RetryPolicy: backoff shapes, caps, jitter bounds, error selection and validation."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobengine.errors import ValidationError
from jobengine.failures import CommandFailed, NonRetryableError, PoisonMessage
from jobengine.retry_policy import Backoff, Jitter, RetryPolicy, error_names


def policy(**kw: object) -> RetryPolicy:
    return RetryPolicy.from_dict({"jitter": "none", **kw})


def test_fixed_linear_and_exponential_backoff_grow_as_named() -> None:
    fixed = policy(backoff="fixed", base_delay_seconds=2)
    linear = policy(backoff="linear", base_delay_seconds=2)
    expo = policy(backoff="exponential", base_delay_seconds=2)
    assert [fixed.delay(n) for n in (1, 2, 3, 4)] == [2, 2, 2, 2]
    assert [linear.delay(n) for n in (1, 2, 3, 4)] == [2, 4, 6, 8]
    assert [expo.delay(n) for n in (1, 2, 3, 4)] == [2, 4, 8, 16]


def test_backoff_is_capped_even_for_huge_attempt_numbers() -> None:
    expo = policy(base_delay_seconds=1, max_delay_seconds=60)
    assert expo.delay(10) == 60
    assert expo.delay(10_000) == 60


@given(
    attempt=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0, max_value=1_000),
    cap=st.floats(min_value=0, max_value=10_000),
    backoff=st.sampled_from(list(Backoff)),
    seed=st.integers(),
)
def test_jittered_delays_stay_within_their_bounds(
    attempt: int, base: float, cap: float, backoff: Backoff, seed: int
) -> None:
    plain = RetryPolicy(
        backoff=backoff, base_delay_seconds=base, max_delay_seconds=cap, jitter=Jitter.NONE
    ).delay(attempt)
    assert 0 <= plain <= cap
    full = RetryPolicy(
        backoff=backoff, base_delay_seconds=base, max_delay_seconds=cap, jitter=Jitter.FULL
    ).delay(attempt, random.Random(seed))
    equal = RetryPolicy(
        backoff=backoff, base_delay_seconds=base, max_delay_seconds=cap, jitter=Jitter.EQUAL
    ).delay(attempt, random.Random(seed))
    assert 0 <= full <= plain
    assert plain / 2 <= equal <= plain


def test_max_retries_three_grants_exactly_three_retries() -> None:
    p = policy(max_retries=3)
    decisions = [p.decide(attempt, ["RuntimeError"]) for attempt in (1, 2, 3, 4)]
    assert [d.retry for d in decisions] == [True, True, True, False]
    assert "exhausted" in decisions[-1].reason


def test_never_retry_errors_fail_at_once_and_retry_on_narrows_the_rest() -> None:
    default = policy()
    assert not default.decide(1, error_names(NonRetryableError("bad input"))).retry
    assert not default.decide(1, error_names(PoisonMessage("garbage"))).retry
    assert default.decide(1, error_names(CommandFailed("exit 1"))).retry
    only_timeouts = policy(retry_on=["TimeoutError"])
    assert only_timeouts.decide(1, error_names(TimeoutError())).retry
    assert not only_timeouts.decide(1, error_names(ValueError())).retry


def test_error_names_match_by_base_class_and_qualified_name() -> None:
    names = error_names(PoisonMessage("x"))
    assert "NonRetryableError" in names
    assert "jobengine.failures.PoisonMessage" in names


def test_job_override_wins_over_type_default() -> None:
    resolved = RetryPolicy.resolve({"max_retries": 5, "backoff": "linear"}, {"max_retries": 1})
    assert resolved.max_retries == 1 and resolved.backoff is Backoff.LINEAR


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"max_retry": 3}, "unknown retry policy field"),
        ({"backoff": "quadratic"}, "bad retry policy"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": "3"}, "integer"),
        ({"base_delay_seconds": -1}, "delays"),
    ],
)
def test_bad_policies_are_refused_with_a_clear_message(
    fields: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        RetryPolicy.from_dict(fields)
    assert fragment in refused.value.message
    assert refused.value.hint


def test_policy_round_trips_through_its_dict_form() -> None:
    original = RetryPolicy(
        max_retries=7, backoff=Backoff.FIXED, jitter=Jitter.EQUAL, retry_on=("OSError",)
    )
    assert RetryPolicy.from_dict(original.to_dict()) == original
