"""The fleet-wide catalogue of job types, in Postgres: what workers announce, what everyone reads.

Workers announce the types they handle when they start (``announce``); the API, the reaper, the
CLI, ``enqueue`` and producers read them through a ``Catalogue`` and never import handler code.
A reader caches the table for ``ttl_seconds`` and, asked for a name it does not know, reads
again once before refusing, so a type is usable within moments of a worker announcing it.

The built-in types ship with the engine: every catalogue knows them even before any worker
announced them (a fresh installation, or an API with no workers yet, accepts them); once a
worker announces one, the stored definition is the one used, like any other type's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from sqlalchemy import Connection, Engine

from jobengine.errors import MalformedPayloadSchema, UnknownJobType
from jobengine.job_types import BUILTINS, JobTypes, JobTypeSpec
from jobengine.store.catalogue_repository import (
    CatalogueRepository,
    Redefinition,
    StoredJobType,
)
from jobengine.store.database import transaction

log = structlog.get_logger("jobengine.catalogue")

ENGINE_DECLARER = "engine"
"""Who declared a built-in type that no worker has announced yet."""


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    spec: JobTypeSpec
    declared_by: str
    updated_at: datetime | None
    """None for a built-in no worker has announced yet."""


def check_schema(spec: JobTypeSpec) -> None:
    """Refuse a spec whose payload schema no validator could use."""
    if spec.payload_schema is None:
        return
    try:
        validator_for(spec.payload_schema).check_schema(spec.payload_schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the root"
        raise MalformedPayloadSchema(spec.name, f"at {where}: {exc.message}") from None


def announce(engine: Engine, specs: Sequence[JobTypeSpec], declared_by: str) -> list[Redefinition]:
    """Upsert every spec in one transaction: new types are added, a definition that differs
    from the stored one replaces it (the later announcement wins) with its version bumped and
    ``job_type_redefined`` logged with both hashes and both declarers. A malformed schema
    refuses the whole announcement before anything is written."""
    for spec in specs:
        check_schema(spec)
    with transaction(engine) as conn:
        changed = CatalogueRepository(conn).upsert(specs, declared_by)
    for c in changed:
        log.warning(
            "job_type_redefined",
            type=c.name,
            old_hash=c.old_hash,
            new_hash=c.new_hash,
            old_declared_by=c.old_declared_by,
            new_declared_by=c.new_declared_by,
            version=c.version,
        )
    log.info("job_types_announced", types=sorted(s.name for s in specs), declared_by=declared_by)
    return changed


Reader = Callable[[], list[StoredJobType]]


class Catalogue:
    """``JobTypes`` read from Postgres, cached for ``ttl_seconds``; safe to share between threads.

    ``engine`` is where it reads by default; ``through(conn)`` gives a view that reads on the
    caller's connection instead (``enqueue`` inside the producer's transaction) and shares this
    cache. A catalogue without an engine can only be used through a connection.
    """

    def __init__(self, engine: Engine | None = None, ttl_seconds: float = 2.0) -> None:
        self.engine = engine
        self.ttl_seconds = ttl_seconds
        self._entries: dict[str, CatalogueEntry] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def get(self, name: str) -> JobTypeSpec:
        return self.lookup(name, self._read_engine).spec

    def names(self) -> list[str]:
        return sorted(self.current(self._read_engine)[0])

    def entries(self) -> list[CatalogueEntry]:
        """Every type with who declared it and when, by name."""
        entries = self.current(self._read_engine)[0]
        return [entries[name] for name in sorted(entries)]

    def entry(self, name: str) -> CatalogueEntry:
        return self.lookup(name, self._read_engine)

    def through(self, conn: Connection) -> JobTypes:
        return _Through(self, conn)

    def _read_engine(self) -> list[StoredJobType]:
        if self.engine is None:
            raise RuntimeError("this catalogue has no engine; use it through(conn)")
        with transaction(self.engine) as conn:
            return CatalogueRepository(conn).all()

    def lookup(self, name: str, read: Reader) -> CatalogueEntry:
        """The type's entry, read with ``read`` when the cache is stale or lacks the name."""
        entries, fresh = self.current(read)
        if name not in entries and not fresh:
            entries = self._reload(read)
        found = entries.get(name)
        if found is None:
            known = ", ".join(sorted(entries)) or "none"
            raise UnknownJobType(
                f"unknown job type {name!r}: not in the catalogue",
                hint="A worker that handles it must announce it: start one with its module in"
                f" JOBENGINE_HANDLER_MODULES. In the catalogue: {known}.",
            )
        return found

    def current(self, read: Reader) -> tuple[dict[str, CatalogueEntry], bool]:
        """The cached entries, read again if older than the TTL; and whether just read."""
        if time.monotonic() - self._loaded_at <= self.ttl_seconds:
            return self._entries, False
        return self._reload(read), True

    def _reload(self, read: Reader) -> dict[str, CatalogueEntry]:
        stored = read()
        entries = {b.name: CatalogueEntry(b, ENGINE_DECLARER, None) for b in BUILTINS}
        entries.update(
            {s.spec.name: CatalogueEntry(s.spec, s.declared_by, s.updated_at) for s in stored}
        )
        with self._lock:
            self._entries = entries
            self._loaded_at = time.monotonic()
        return entries


@dataclass(frozen=True, slots=True)
class _Through:
    """A catalogue read on one connection (inside its transaction), sharing the cache."""

    catalogue: Catalogue
    conn: Connection

    def _read(self) -> list[StoredJobType]:
        return CatalogueRepository(self.conn).all()

    def get(self, name: str) -> JobTypeSpec:
        return self.catalogue.lookup(name, self._read).spec

    def names(self) -> list[str]:
        return sorted(self.catalogue.current(self._read)[0])


_process_catalogues: dict[str, Catalogue] = {}
_process_lock = threading.Lock()


def catalogue_of(conn: Connection) -> JobTypes:
    """This process's catalogue of the database ``conn`` is on, read through ``conn``: the
    default for submissions that name no ``types``. Keyed by database, since one process (a
    test run, a tool) may talk to several."""
    key = conn.engine.url.render_as_string(hide_password=True)
    with _process_lock:
        catalogue = _process_catalogues.setdefault(key, Catalogue())
    return catalogue.through(conn)
