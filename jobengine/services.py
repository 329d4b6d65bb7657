"""Finding (or starting) the servers a command needs, and bringing the schema up to date.

Every command that touches Postgres goes through here, so ``make dev``, ``jobengine db ...``
and, later, the fleet agree on one rule: ``JOBENGINE_DATABASE_URL`` wins; without it a private
Postgres is started under the data folder, and only a server this process started is stopped
by it (a server someone else started, e.g. a running ``make dev``, is reused and left alone).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import structlog
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from config.settings import Settings
from jobengine.embedded import EmbeddedPostgres, EmbeddedRedis
from jobengine.errors import JobEngineError
from jobengine.store import migrate
from jobengine.store.database import make_engine, normalize_url
from jobengine.store.hosts import hosts_of

log = structlog.get_logger("jobengine.services")

URL_EXAMPLE = "postgresql+psycopg://user:password@host:5432/dbname"


class ConfigurationError(JobEngineError):
    code = "CONFIGURATION_ERROR"
    hint = f"Set JOBENGINE_DATABASE_URL to a URL like {URL_EXAMPLE}, or unset it."


class MigrationError(JobEngineError):
    code = "MIGRATION_ERROR"
    hint = "Name a revision id, 'head', 'base' or a relative step such as -1."


def embedded_postgres_dir(settings: Settings) -> Path:
    return settings.data_dir / "postgres"


def masked_url(url: str) -> str:
    """The URL with its password hidden: URLs end up in logs and terminals."""
    try:
        shown = make_url(normalize_url(url)).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"
    return shown.replace("%2C", ",")  # a list of hosts reads as one


def check_database_url(url: str) -> str:
    """Refuse a malformed or non-Postgres URL up front, with a message naming the setting."""
    try:
        parsed = make_url(normalize_url(url))
    except ArgumentError:
        raise ConfigurationError("JOBENGINE_DATABASE_URL is not a database URL") from None
    if parsed.get_backend_name() != "postgresql":
        raise ConfigurationError(
            f"JOBENGINE_DATABASE_URL names a {parsed.get_backend_name()!r} database; "
            "jobengine needs PostgreSQL"
        )
    if len(hosts_of(url)) > 1 and "target_session_attrs" not in parsed.query:
        raise ConfigurationError(
            "JOBENGINE_DATABASE_URL lists several hosts but no target_session_attrs, so libpq "
            "would keep the first that answers, even a read-only standby",
            hint="Add ?target_session_attrs=read-write (libpq then skips standbys), or "
            "=any when every host leads to the same primary (poolers).",
        )
    return url


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Let a server start or stop finish before Ctrl-C takes effect.

    Interrupting ``initdb`` or ``pg_ctl`` half-way leaves a data folder or a server that the
    next run trips over; a Ctrl-C that arrives meanwhile is raised as soon as the step is done.
    """
    interrupted = False

    def remember(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        interrupted = True

    try:
        previous = signal.signal(signal.SIGINT, remember)
    except ValueError:  # not the main thread, which alone receives signals: nothing to defer
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if interrupted:
            raise KeyboardInterrupt


def stop_database(server: EmbeddedPostgres | None) -> None:
    """Stop an embedded Postgres this process started; None (nothing to stop) is fine."""
    if server is None:
        return
    with interrupts_deferred():
        server.stop()
    log.info("postgres.embedded.stopped", data_dir=str(server.data_dir))


def resolve_database_url(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """The URL to use, and the embedded server to stop afterwards if this call started one."""
    if settings.database_url:
        return check_database_url(settings.database_url), None
    server = EmbeddedPostgres(embedded_postgres_dir(settings))
    if server.running():
        log.info("postgres.embedded.reused", data_dir=str(server.data_dir), port=server.port)
        return server.url, None
    try:
        with interrupts_deferred():
            url = server.start()
    except BaseException:
        stop_database(server)  # Ctrl-C or a failure half-way through start: leave nothing behind
        raise
    log.info("postgres.embedded.started", data_dir=str(server.data_dir), port=server.port)
    return url, server


@contextmanager
def database(settings: Settings) -> Iterator[tuple[str, EmbeddedPostgres | None]]:
    """``resolve_database_url`` with the stop guaranteed, whatever happens inside."""
    url, server = resolve_database_url(settings)
    try:
        yield url, server
    finally:
        stop_database(server)


def embedded_redis_dir(settings: Settings) -> Path:
    return settings.data_dir / "redis"


def resolve_broker_url(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    """The Redis URL to use, and the embedded server to stop afterwards if this call started it.

    Same rule as for Postgres: ``JOBENGINE_BROKER_URL`` wins; else the installation's embedded
    Redis is reused when running, or started.
    """
    if settings.broker_url:
        return settings.broker_url, None
    server = EmbeddedRedis(embedded_redis_dir(settings))
    if server.running():
        return server.url, None
    with interrupts_deferred():
        url = server.start()
    log.info("redis.embedded.started", data_dir=str(server.data_dir), port=server.port)
    return url, server


@contextmanager
def broker(settings: Settings) -> Iterator[tuple[str, EmbeddedRedis | None]]:
    """``resolve_broker_url`` with the stop guaranteed."""
    url, server = resolve_broker_url(settings)
    try:
        yield url, server
    finally:
        if server is not None:
            with interrupts_deferred():
                server.stop()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()


@dataclass(frozen=True, slots=True)
class MigrationOutcome:
    before: str | None
    after: str | None


def _migrate(url: str, revision: str, *, down: bool) -> MigrationOutcome:
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        before = migrate.current_revision(engine)
        try:
            (migrate.downgrade if down else migrate.upgrade)(engine, revision)
        except CommandError as exc:
            raise MigrationError(f"cannot migrate to {revision!r}: {exc}") from exc
        return MigrationOutcome(before, migrate.current_revision(engine))
    finally:
        engine.dispose()


def upgrade_database(url: str, revision: str = "head") -> MigrationOutcome:
    return _migrate(url, revision, down=False)


def downgrade_database(url: str, revision: str = "base") -> MigrationOutcome:
    return _migrate(url, revision, down=True)


def current_database_revision(url: str) -> str | None:
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        return migrate.current_revision(engine)
    finally:
        engine.dispose()
