"""Which broker queues a worker consumes, derived from its handlers and ``-Q``."""

from __future__ import annotations

from types import SimpleNamespace

from celery import Celery

from config.celery import celery_config
from config.settings import Settings
from workers.handlers import builtin  # noqa: F401  (the handlers a worker always has)
from workers.routing import _selected_by_option, consume_type_queues, type_queues

DECLARED = {"resize": "gpu", "noop": "default", "mail": "default"}


def test_without_q_a_worker_consumes_the_queue_of_every_type_it_handles() -> None:
    assert type_queues(DECLARED, DECLARED.__getitem__, None) == [
        "jobs.mail",
        "jobs.noop",
        "jobs.resize",
    ]


def test_with_q_a_worker_consumes_the_queues_of_the_types_declared_in_the_named_queues() -> None:
    assert type_queues(DECLARED, DECLARED.__getitem__, ["gpu"]) == ["jobs.resize"]
    assert type_queues(DECLARED, DECLARED.__getitem__, ["default"]) == ["jobs.mail", "jobs.noop"]
    assert type_queues(DECLARED, DECLARED.__getitem__, ["other"]) == []


def _app() -> Celery:
    app = Celery("routing-test", set_as_current=False)
    app.config_from_object(celery_config(Settings(), "memory://"))
    return app


def test_celery_tells_a_worker_started_with_q_from_one_started_without() -> None:
    without, with_q = _app(), _app()
    with_q.amqp.queues.select(["default", "inbox"])  # what `-Q default,inbox` does
    assert _selected_by_option(without.amqp.queues) is None
    assert _selected_by_option(with_q.amqp.queues) == ["default", "inbox"]


def test_the_type_queues_are_added_to_the_q_names_the_worker_keeps_as_its_inbox() -> None:
    app = _app()
    app.amqp.queues.select(["default"])
    consume_type_queues(sender="w@test", instance=SimpleNamespace(app=app))
    consumed = set(app.amqp.queues.consume_from)
    assert "default" in consumed and "jobs.noop" in consumed and "jobs.sleep" in consumed
