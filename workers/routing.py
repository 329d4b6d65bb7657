"""Which broker queues a worker consumes: derived from its handlers, never hand-listed.

Every job's message travels in ``jobs.<type>`` (``jobengine.dispatch.broker_queue``). A worker
consumes the queue of each type it has a handler for whose declared queue is selected: all of
them when it was started without ``-Q``, else those whose declared queue ``-Q`` names. It keeps
consuming the ``-Q`` names themselves (default: ``default``) as the inbox where messages of
plain Celery producers land (``celery call jobs.noop``); one of those for a type it cannot run
is handed back to the type's queue (``workers.poison``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

import structlog
from celery import signals

from jobengine.dispatch import broker_queue
from jobengine.job_types import registry
from workers.registry import HANDLERS

log = structlog.get_logger("workers.routing")


def type_queues(
    handled: Iterable[str], declared_queue: Callable[[str], str], selected: Collection[str] | None
) -> list[str]:
    """The broker queues of the handled types whose declared queue is ``selected`` (None: all)."""
    return sorted(
        broker_queue(name)
        for name in handled
        if selected is None or declared_queue(name) in selected
    )


def _selected_by_option(queues: Any) -> list[str] | None:
    """The names given with ``-Q``, or None when the worker was started without it.

    Celery keeps no public record of whether ``-Q`` was given: ``consume_from`` answers the
    default queue either way. ``_consume_from`` is set only by ``select`` (``-Q``); the test
    ``test_routing_queues`` pins this against the installed Celery.
    """
    chosen = queues._consume_from
    return None if chosen is None else list(chosen)


def consume_type_queues(sender: Any = None, instance: Any = None, **_: Any) -> None:
    """``celeryd_after_setup``: add the type queues to what this worker consumes."""
    queues = instance.app.amqp.queues
    selected = _selected_by_option(queues)
    inbox = sorted(queues.consume_from)
    added = type_queues(HANDLERS, lambda name: registry.get(name).queue, selected)
    for name in added:
        queues.select_add(name)
    log.info("worker_routing", worker=sender, inbox=inbox, type_queues=added)


signals.celeryd_after_setup.connect(consume_type_queues, weak=False)
