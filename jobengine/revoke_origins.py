"""Who sent a revoke: left in Redis by the sender, taken once by the worker that acts on it.

A Celery revoke is a broadcast with no sender in it, so a worker alone can only name the
revoke itself (``celery:revoke``). A sender that knows its user (Flower, run by
``jobengine flower``) leaves the user and address under the task's id before it broadcasts;
the worker whose ``task_revoked`` fires takes it (read and delete in one transaction, so a
chunk's or a repeated revoke's second taker finds nothing) and cancels the job as that user.
The note outlives a worker's memory of a revoked id (Celery's ``CELERY_WORKER_REVOKE_EXPIRES``,
three hours by default); a revoke acted on after a day, or one whose note Redis lost, is filed
as ``celery:revoke``.
"""

from __future__ import annotations

import json
from typing import Any

import redis
import structlog

from jobengine.audit.origin import Origin

log = structlog.get_logger("jobengine.revoke_origins")

KEY_PREFIX = "jobengine:revoke-origin:"
TTL_SECONDS = 24 * 3600


def leave(client: redis.Redis, task_id: str, origin: Origin) -> bool:
    """Note who revokes ``task_id``; False (logged) when Redis would not take it, and the
    revoke goes out anyway, to be filed under ``celery:revoke``."""
    note = {"actor": origin.actor, "surface": origin.surface, "clientAddr": origin.client_addr}
    try:
        client.set(KEY_PREFIX + task_id, json.dumps(note), ex=TTL_SECONDS)
    except redis.RedisError as exc:
        log.warning("revoke_origin_not_left", task_id=task_id, error=str(exc))
        return False
    return True


def take(client: redis.Redis, task_id: str) -> Origin | None:
    """The origin left for ``task_id``, removed as it is read; None when none was left (or
    Redis cannot be asked: the revoke is still acted on, under ``celery:revoke``)."""
    try:
        with client.pipeline(transaction=True) as pipe:
            pipe.get(KEY_PREFIX + task_id)
            pipe.delete(KEY_PREFIX + task_id)
            raw, _ = pipe.execute()
    except redis.RedisError as exc:
        log.warning("revoke_origin_not_read", task_id=task_id, error=str(exc))
        return None
    return _parsed(raw, task_id)


def _parsed(raw: Any, task_id: str) -> Origin | None:
    if raw is None:
        return None
    try:
        note = json.loads(raw)
        actor, surface, addr = note["actor"], note["surface"], note.get("clientAddr")
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("revoke_origin_unreadable", task_id=task_id, error=str(exc))
        return None
    if not isinstance(actor, str) or surface != "flower":
        log.warning("revoke_origin_unreadable", task_id=task_id, error="not Flower's note")
        return None
    client_addr = addr if isinstance(addr, str) else None
    return Origin(actor=actor, surface="flower", client_addr=client_addr)
