"""Pure pieces: the envelope's status mapping, key text and hashing, stream positions."""

from __future__ import annotations

import hashlib

import pytest

from jobengine.api.errors import Forbidden, Unauthorized, status_for
from jobengine.api.keys import (
    ApiKey,
    UnknownScope,
    check_scopes,
    hash_key,
    looks_like_key,
    new_key_text,
)
from jobengine.cancellation import JobAlreadyFinal
from jobengine.errors import (
    DuplicateIdempotencyKey,
    InvalidTransition,
    JobEngineError,
    JobNotFound,
    PayloadTooLarge,
    StoreUnavailable,
    UnknownJobType,
)
from jobengine.store.outbox import BadPosition, Position


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (Unauthorized("no"), 401),
        (Forbidden("no"), 403),
        (JobNotFound(1), 404),
        (UnknownJobType("x"), 422),
        (PayloadTooLarge("big"), 413),
        (DuplicateIdempotencyKey("k"), 409),
        (InvalidTransition(1, "completed", "running"), 409),
        (StoreUnavailable("down"), 503),
        (JobEngineError("?"), 500),
    ],
)
def test_status_of_each_engine_error(error: JobEngineError, status: int) -> None:
    assert status_for(error) == status


def test_already_final_is_409() -> None:
    class Stub:
        id = 3
        status = type("S", (), {"value": "completed"})()

    assert status_for(JobAlreadyFinal(Stub())) == 409  # type: ignore[arg-type]


def test_unavailable_store_is_retryable_in_the_envelope() -> None:
    assert StoreUnavailable("down").retryable is True
    assert DuplicateIdempotencyKey("k").code == "DUPLICATE_IDEMPOTENCY_KEY"


def test_key_text_shape_and_hash() -> None:
    plaintext, prefix = new_key_text()
    head, got_prefix, secret = plaintext.split("_", 2)
    assert (head, got_prefix) == ("je", prefix) and len(prefix) == 8 and len(secret) >= 32
    assert looks_like_key(plaintext)
    assert hash_key(plaintext) == hashlib.sha256(plaintext.encode()).hexdigest()
    assert hash_key(plaintext) != hash_key(plaintext + "x")
    assert new_key_text()[0] != plaintext
    for bad in ("", "je_short_x", "xx_abcdefgh_" + "s" * 40, "je_abc_" + "s" * 40):
        assert not looks_like_key(bad)


def test_scopes() -> None:
    assert check_scopes(["jobs:read", "jobs:read", "admin"]) == ("jobs:read", "admin")
    with pytest.raises(UnknownScope):
        check_scopes(["jobs:delete"])
    with pytest.raises(UnknownScope):
        check_scopes([])
    admin = ApiKey(1, "t", "n", "p", ("admin",))
    reader = ApiKey(2, "t", "n", "q", ("jobs:read",))
    assert admin.allows("dlq:replay") and admin.is_admin
    assert reader.allows("jobs:read") and not reader.allows("jobs:write")


def test_positions_parse_and_order() -> None:
    assert str(Position.parse("12-345")) == "12-345"
    assert Position(12, 9) < Position(13, 1) < Position(13, 2)
    for bad in ("", "12", "a-b", "1-2-3", "99999999999999999999-1", "9223372036854775808-1"):
        with pytest.raises(BadPosition):
            Position.parse(bad)
