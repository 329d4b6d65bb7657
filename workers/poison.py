"""Messages that can never run a handler are dead-lettered in Postgres, not dropped; messages
that merely reached the wrong worker are handed back.

Celery logs such a message and then acknowledges or rejects it: a body it cannot decode, a
content type it refuses, a task name with no handler in this worker. Left at that, the job
would sit ``scheduled`` and the leader would publish it again and again, each message meeting
the same end. Here the job named by the message fails for good as ``poison`` instead; a message
from a plain Celery producer that names no job of ours is first recorded as a job, with what
could be read of it, so an operator can see it and replay or discard it.

A task name this worker has no handler for is poison only when its type is not in the
catalogue at all. A catalogued type's message (typically a plain producer's, which lands in
``default``) is re-sent untouched to the type's broker queue ``jobs.<type>``, where only
workers that can run it take it: same body, headers, task id and priority, no claim, so no
attempt is spent and nothing is dead-lettered.
"""

from __future__ import annotations

import logging
import os
from functools import cache
from typing import Any

import structlog
from celery import signals
from celery.worker.consumer import Consumer
from sqlalchemy.exc import SQLAlchemyError

from jobengine.catalogue import Catalogue
from jobengine.dispatch import (
    TASK_PREFIX,
    adopted_identity,
    broker_queue,
    is_chunk,
    parse_task_id,
)
from jobengine.errors import JobEngineError, UnknownJobType
from jobengine.store.database import process_engine
from workers.runtime import runtime, urls

log = structlog.get_logger("workers.poison")
ack_log = logging.getLogger("workers.poison")

MAX_RAW_BODY_CHARS = 8_000


def _error(message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": "POISON_MESSAGE",
        "class": "jobengine.failures.PoisonMessage",
        "message": message,
        "traceback": "",
        "details": details,
    }


def _raw(message: Any) -> dict[str, Any]:
    """What can be kept of a message whose body does not decode: its bytes as text, bounded."""
    body = message.body
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return {
        "content_type": message.content_type,
        "content_encoding": message.content_encoding,
        "body": text[:MAX_RAW_BODY_CHARS],
    }


def dead_letter_message(
    headers: dict[str, Any], why: str, details: dict[str, Any], job_ids: list[int] | None = None
) -> None:
    """Fail for good the jobs a poison message names (or adopt it, when it names none)."""
    name = str(headers.get("task") or "")
    task_id = str(headers.get("id") or "")
    if not name.startswith(TASK_PREFIX):
        return  # not a job message: nothing of ours to record
    rt = runtime()
    error = _error(why, details)
    parsed = parse_task_id(task_id)
    if parsed is not None:
        job_ids = [parsed[0]]
    if job_ids is None and is_chunk(task_id):
        log.warning("poison_chunk_left_to_leader", task_id=task_id, why=why)
        return  # its jobs stay marked published; the leader re-publishes them one by one
    if job_ids is None:
        try:
            tenant_id, project_id = adopted_identity(headers)
        except ValueError:
            tenant_id, project_id = "default", "default"
        rt.executor.adopt_poison(
            name[len(TASK_PREFIX) :],
            details,
            task_id,
            rt.owner,
            error,
            tenant_id=tenant_id,
            project_id=project_id,
        )
        return
    for job_id in job_ids:
        rt.executor.poison(job_id, rt.owner, error)


def _job_ids_of(payload: Any) -> list[int] | None:
    try:
        args = payload[0] if isinstance(payload, list | tuple) else payload.get("args")
        return [int(a) for a in args]
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None


def on_unknown_task(message: Any = None, name: str = "", id: str = "", **_: Any) -> None:
    """No handler for this type in this worker (Celery sends ``task_unknown``)."""
    try:
        headers = dict(message.headers or {}) if message is not None else {}
        headers.setdefault("task", name)
        headers.setdefault("id", id)
        payload = message.payload if message is not None else None
        ours = parse_task_id(id) is not None or is_chunk(id)
        dead_letter_message(
            headers,
            f"no handler for job type {name[len(TASK_PREFIX) :]!r} in worker {runtime().owner}",
            {"task": name, "payload": None if ours else payload},
            _job_ids_of(payload) if is_chunk(id) else None,
        )
    except (JobEngineError, OSError) as exc:
        log.error("poison_not_recorded", task=name, task_id=id, error=str(exc))


def in_catalogue(job_type: str) -> bool:
    """Whether the fleet knows ``job_type``: the catalogue, built-ins included.

    When Postgres cannot answer, the type counts as known: a message handed back waits in its
    type's queue, where nothing is lost, while poisoning it would fail a job that may be healthy.
    """
    try:
        _catalogue().get(job_type)
    except UnknownJobType:
        return False
    except (JobEngineError, SQLAlchemyError) as exc:
        log.warning("catalogue_unreachable", type=job_type, error=str(exc))
    return True


@cache
def _catalogue_for(pid: int) -> Catalogue:
    return Catalogue(process_engine(urls()[0]))


def _catalogue() -> Catalogue:
    """This process's catalogue reader, made after any fork."""
    return _catalogue_for(os.getpid())


class JobConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, handing back messages for types other workers run, and recording
    undecodable and refused messages before it drops them."""

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        name = str((message.headers or {}).get("task") or "")
        job_type = name[len(TASK_PREFIX) :] if name.startswith(TASK_PREFIX) else ""
        if job_type and in_catalogue(job_type):
            self._hand_back(job_type, message)
            return
        super().on_unknown_task(body, message, exc)

    def _hand_back(self, job_type: str, message: Any) -> None:
        headers = dict(message.headers or {})
        task_id = str(headers.get("id") or "")
        target = broker_queue(job_type)
        source = (message.delivery_info or {}).get("routing_key")
        fields = {"type": job_type, "task_id": task_id, "from_queue": source, "to_queue": target}
        parsed = parse_task_id(task_id)
        if parsed is not None:
            fields.update(job_id=parsed[0], attempt=parsed[1])
        if source == target:
            # Only a worker started with an explicit -Q naming another type's queue gets here;
            # sending it back would loop. A job of ours is published again by the leader.
            log.error("handback_refused", why="this worker consumes the type's own queue", **fields)
            message.ack_log_error(ack_log, self.connection_errors)
            return
        try:
            queue = self.app.amqp.queues[target]
            with self.app.producer_or_acquire() as producer:
                producer.publish(
                    message.body,
                    exchange=queue.exchange,
                    routing_key=queue.routing_key,
                    declare=[queue],
                    headers=headers,
                    priority=message.properties.get("priority") or 0,
                    content_type=message.content_type,
                    content_encoding=message.content_encoding,
                    **{
                        key: message.properties[key]
                        for key in ("correlation_id", "reply_to")
                        if message.properties.get(key)
                    },
                )
        except Exception as exc:  # the broker's errors are many; none may lose the message
            log.warning("handback_failed", error=str(exc), **fields)
            message.reject_log_error(ack_log, self.connection_errors, requeue=True)
            return
        message.ack_log_error(ack_log, self.connection_errors)
        log.info("handed_back", **fields)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._poison(message, f"message body could not be decoded: {exc}")
        super().on_decode_error(message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._poison(message, f"message refused: {exc}")
        super().on_invalid_task(body, message, exc)

    def _poison(self, message: Any, why: str) -> None:
        try:
            dead_letter_message(dict(message.headers or {}), why, _raw(message))
        except (JobEngineError, OSError) as exc:
            log.error("poison_not_recorded", why=why, error=str(exc))


signals.task_unknown.connect(on_unknown_task, weak=False)
