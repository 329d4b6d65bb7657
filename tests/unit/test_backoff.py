"""The backoff of the long-running roles and the stand-in retry of one unit of store work."""

from __future__ import annotations

import random

import pytest

from jobengine.errors import StoreUnavailable, ValidationError
from jobengine.store.backoff import Backoff, retrying


def test_backoff_grows_from_half_the_base_to_the_cap_and_starts_over_after_reset() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(7))
    waits = [backoff.next() for _ in range(12)]
    assert all(0.25 <= w <= 4.0 for w in waits)
    assert waits[0] <= 0.5 and max(waits[6:]) > 2.0
    assert backoff.failures == 12
    backoff.reset()
    assert backoff.failures == 0 and backoff.next() <= 0.5


def test_a_transient_store_error_is_retried_until_the_work_succeeds() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise StoreUnavailable("connection lost")
        return "done"

    assert retrying(flaky, attempts=5) == "done"
    assert len(calls) == 3


def test_the_last_transient_error_is_raised_when_the_attempts_are_used_up() -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise StoreUnavailable("refused")

    with pytest.raises(StoreUnavailable):
        retrying(down, attempts=3)
    assert len(calls) == 3


def test_an_error_that_is_not_transient_is_raised_at_once() -> None:
    calls: list[int] = []

    def wrong() -> None:
        calls.append(1)
        raise ValidationError("bad row")

    with pytest.raises(ValidationError):
        retrying(wrong, attempts=5)
    assert len(calls) == 1
