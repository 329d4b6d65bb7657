"""The Celery application: ``celery -A workers.app worker``.

The broker is Redis: the one named by ``JOBENGINE_BROKER_URL``, else the embedded one of this
installation (started if needed). Handler modules are imported here, then a ``jobs.<type>``
task is registered for each handler, a worker announces its types to the catalogue, and it
consumes each one's broker queue ``jobs.<type>`` besides the ``-Q`` names (``workers.routing``).
"""

from __future__ import annotations

import importlib
import sys

from celery import Celery

from config.celery import celery_config
from config.logging import configure_logging
from config.settings import get_settings
from jobengine import sealed
from jobengine.job_types import registry
from jobengine.store.startup import check_at_start
from workers.alive import AliveFile
from workers.announce import announce_or_exit, import_handlers, is_worker
from workers.command_types import withhold_command_handlers
from workers.registry import HANDLERS
from workers.runtime import urls
from workers.shutdown import ShutdownBound
from workers.tasks import register_tasks

settings = get_settings()
configure_logging(settings.log_level, settings.log_json)

app = Celery("jobengine")
app.config_from_object(celery_config(settings, urls()[1]))
app.conf.worker_consumer = "workers.poison:JobConsumer"

import_handlers(("workers.handlers.builtin", *settings.handler_modules))
withhold_command_handlers(HANDLERS, registry, enabled=settings.command_types_enabled)
importlib.import_module("workers.hooks")
importlib.import_module("workers.poison")
importlib.import_module("workers.routing")  # consumes jobs.<type> for each handler it has
importlib.import_module("workers.presence")  # its row in the workers registry
register_tasks(app)
app.steps["worker"].add(AliveFile)
app.steps["worker"].add(ShutdownBound)  # SIGTERM: finish within the bound, hand back the rest
if is_worker(sys.argv):
    # Before the pool forks: wait (one line a problem) until the database is usable by this
    # release, then announce; a schema from a newer release exits with EX_CONFIG.
    check_at_start(settings, "worker", database_url=urls()[0])
    announce_or_exit(urls()[0])

if settings.sealed:
    # After the handler modules are imported, before the pool forks: every process of this
    # worker may reach the database and the broker, and nothing else.
    sealed.install(sealed.allowed_endpoints(*urls(), settings.broker_sentinel_master))
