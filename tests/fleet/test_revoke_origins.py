"""The note of who sent a revoke, in a real Redis: taken once, and never in the way."""

from __future__ import annotations

import json

import redis

from jobengine import revoke_origins
from jobengine.audit.origin import Origin
from jobengine.embedded import free_loopback_port

OPS = Origin(actor="flower:ops", surface="flower", client_addr="127.0.0.1")


def test_a_note_is_taken_once_with_its_user_and_address(broker_url: str) -> None:
    client = redis.Redis.from_url(broker_url)
    assert revoke_origins.leave(client, "job-7-1", OPS)
    ttl = client.ttl(revoke_origins.KEY_PREFIX + "job-7-1")
    assert 0 < ttl <= revoke_origins.TTL_SECONDS

    assert revoke_origins.take(client, "job-7-1") == OPS
    assert revoke_origins.take(client, "job-7-1") is None  # a chunk's second job, a re-revoke


def test_a_note_that_is_not_flowers_is_not_believed(broker_url: str) -> None:
    client = redis.Redis.from_url(broker_url)
    forged = {"actor": "api:admin (ak_1)", "surface": "rest", "clientAddr": None}
    client.set(revoke_origins.KEY_PREFIX + "job-8-1", json.dumps(forged))
    client.set(revoke_origins.KEY_PREFIX + "job-9-1", b"not json")

    assert revoke_origins.take(client, "job-8-1") is None
    assert revoke_origins.take(client, "job-9-1") is None


def test_an_unreachable_redis_leaves_and_takes_nothing_and_raises_nothing() -> None:
    gone = redis.Redis(port=free_loopback_port(), socket_connect_timeout=1, socket_timeout=1)
    assert revoke_origins.leave(gone, "job-7-1", OPS) is False
    assert revoke_origins.take(gone, "job-7-1") is None
