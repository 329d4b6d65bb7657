"""The backoff of the long-running roles (the store's retry is tested with its error mapping)."""

from __future__ import annotations

import random

from jobengine.store.backoff import Backoff


def test_backoff_grows_from_half_the_base_to_the_cap_and_starts_over_after_reset() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(7))
    waits = [backoff.next() for _ in range(12)]
    assert all(0.25 <= w <= 4.0 for w in waits)
    assert waits[0] <= 0.5 and max(waits[6:]) > 2.0
    assert backoff.failures == 12
    backoff.reset()
    assert backoff.failures == 0 and backoff.next() <= 0.5
