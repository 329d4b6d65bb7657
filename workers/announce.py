"""A worker announces the job types it handles to the catalogue, once, as it starts.

It runs in the main process at import of ``workers.app``, after the handler modules are
imported and before the pool forks, on a short-lived engine disposed at once, so no pooled
connection is shared with the children. A refusal (a malformed payload schema, the store out of
reach) ends the worker with one line naming what is wrong: a signal handler cannot do that,
since Celery swallows what they raise.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
from collections.abc import Iterable
from typing import NoReturn

from jobengine.catalogue import announce
from jobengine.errors import JobEngineError
from jobengine.job_types import JobTypeSpec, registry
from jobengine.store.database import make_engine
from workers.registry import HANDLERS

EXIT_REFUSED = 3


def handled_types() -> list[JobTypeSpec]:
    """The specs of the types this worker has a handler for (built-ins included)."""
    return [registry.get(name) for name in sorted(HANDLERS)]


def declarer() -> str:
    return f"worker@{socket.gethostname()}:{os.getpid()}"


def is_worker(argv: list[str]) -> bool:
    """Flower and ``celery inspect`` load the same app; only a worker handles the types."""
    return "worker" in argv[1:]


def refuse(exc: JobEngineError) -> NoReturn:
    """End the worker with one line on stderr: what is wrong, then how to fix it."""
    sys.stderr.write(f"jobengine worker refused to start: {exc.message}. {exc.hint}\n")
    raise SystemExit(EXIT_REFUSED) from None


def import_handlers(modules: Iterable[str]) -> None:
    """Import the handler modules; a type whose model has no JSON Schema ends the worker."""
    try:
        for module in modules:
            importlib.import_module(module)
    except JobEngineError as exc:
        refuse(exc)


def announce_or_exit(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        announce(engine, handled_types(), declarer())
    except JobEngineError as exc:
        refuse(exc)
    finally:
        engine.dispose()
