"""What every ``jobengine`` sub-command shares: settings, the store, JSON out, parsing of the
values operators type (times, durations, JSON), who they are, and publishing after commit.

It sits apart from ``cli.py`` so the command modules (``cli_jobs``, ``cli_dlq``) can use it
without importing the top-level app that registers them.
"""

from __future__ import annotations

import dataclasses
import functools
import getpass
import json
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Annotated, Any, ParamSpec, TypeVar, cast

import structlog
import typer
from pydantic import BaseModel
from pydantic import ValidationError as SettingsInvalid
from pydantic.alias_generators import to_camel
from rich.console import Console
from sqlalchemy import Engine

from config.settings import Settings
from jobengine.api.cursors import JOB_CURSOR, decode_cursor, encode_cursor
from jobengine.api.schemas import JobOut
from jobengine.audit.origin import Origin
from jobengine.catalogue import Catalogue
from jobengine.dispatch import Publisher
from jobengine.domain.job import Job
from jobengine.embedded import EmbeddedRedis
from jobengine.errors import JobEngineError, ValidationError
from jobengine.services import ConfigurationError, database, embedded_redis_dir
from jobengine.store.database import make_engine
from jobengine.store.jobs_repository import DispatchRef

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]


def one_line(text: str) -> str:
    """Driver messages span lines (psycopg adds a second one); a log line must not."""
    return " ".join(text.split())


def load_settings() -> Settings:
    """Settings, with a bad ``JOBENGINE_*`` value reported as the variable to fix."""
    try:
        return Settings()
    except SettingsInvalid as exc:
        first = exc.errors()[0]
        name = "_".join(str(part) for part in first["loc"]).upper()
        what = f"JOBENGINE_{name} is invalid" if name else "the settings do not fit together"
        raise ConfigurationError(
            f"{what}: {first['msg']}",
            hint="Fix it in the environment or in .env; config/example.env shows valid values.",
        ) from exc


def settings_of(ctx: typer.Context) -> Settings:
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = load_settings()
    return root.obj


def note(text: str) -> None:
    """Context for humans goes to stderr, so stdout stays parseable."""
    typer.echo(text, err=True)


@contextmanager
def store(ctx: typer.Context) -> Iterator[Engine]:
    """An engine on the command's database, disposed (and an embedded server stopped) after."""
    with database(settings_of(ctx)) as (url, _server):
        engine = make_engine(url, pool_size=1)
        try:
            yield engine
        finally:
            engine.dispose()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def emit_json(document: Any) -> None:
    """The one JSON document a ``--json`` command prints; datetimes as ISO 8601 with offset."""
    typer.echo(json.dumps(document, default=_plain, sort_keys=True))


def job_dict(job: Job) -> dict[str, Any]:
    """Every column of a job, for the human view of ``jobs get`` (lease owner included)."""
    data: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(job), default=_plain))
    return data


def rest_fields(model: BaseModel) -> dict[str, Any]:
    """An API model as ``--json`` prints it: the REST fields, camelCase, nothing internal."""
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
    return data


def camel(fields: dict[str, Any]) -> dict[str, Any]:
    """A row's own keys in the wire's camelCase; values (payloads, details) are left as
    their authors wrote them."""
    return {to_camel(key): value for key, value in fields.items()}


def job_json(job: Job) -> dict[str, Any]:
    """A job as ``GET /api/v1/jobs/{id}`` shows it to an admin key (the CLI reads Postgres
    itself, so it sees the traceback); no lease token, owner or dispatch marks."""
    return rest_fields(JobOut.of(job, show_traceback=True))


CursorOption = Annotated[
    str | None,
    typer.Option(
        "--cursor",
        help="Where the previous page ended: its nextCursor (as the API's). A bare id is"
        " still taken, deprecated, for one release.",
    ),
]


def cursor_after(value: str | None, kind: str = JOB_CURSOR) -> int:
    """The id a page starts after, from a cursor the API or ``--json`` handed out."""
    if not value:
        return 0
    if value.isdigit():
        note("--cursor with a bare id is deprecated; pass the nextCursor --json prints")
        return int(value)
    return decode_cursor(value, kind)


def cursor_out(next_id: int | None, kind: str = JOB_CURSOR) -> str | None:
    return None if next_id is None else encode_cursor(next_id, kind)


def table_console() -> Console:
    """A console for result tables. In a terminal, the terminal's width; piped (to grep, less
    or a log) wide enough that rows are not folded, since a folded id no longer greps."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def when(value: datetime | str | None) -> str:
    """A timestamp short enough for a table column, in UTC."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def shorten(text: str | None, width: int) -> str:
    if not text:
        return "-"
    text = one_line(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def cli_actor() -> str:
    """Who a history row names for a command run from a terminal: ``cli:<user>@<host>``.

    The user and the host together tell apart two operators, or one operator on two machines.
    """
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER, e.g. in a container
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def cli_origin() -> Origin:
    """The audit log's author of a command: the terminal's user, fleet-wide (no tenant)."""
    return Origin(actor=cli_actor(), surface="cli")


log = structlog.get_logger("jobengine.cli")

P = ParamSpec("P")
R = TypeVar("R")


def files_refusals(
    action: str, object_param: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """An audited command that the engine refuses (bad input, an unknown object, a conflict)
    files the refusal, as REST does, under the terminal's user and in a transaction of its
    own, before the one-line error is printed; ``object_param`` names the argument holding
    the object's id (every command takes its ``ctx``, which reaches the database). A failure
    that may pass by itself (``retryable``: the store is down or overloaded) is not a refusal
    of the act, and there may be nowhere to file it."""

    def wrap(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return command(*args, **kwargs)
            except JobEngineError as exc:
                ctx = kwargs.get("ctx")  # Typer's own context class, whichever click it bundles
                if not exc.retryable and hasattr(ctx, "find_root"):
                    object_id = kwargs.get(object_param) if object_param else None
                    _file_refusal(cast(typer.Context, ctx), action, exc.code, object_id)
                raise

        return run

    return wrap


def _file_refusal(ctx: typer.Context, action: str, code: str, object_id: Any) -> None:
    """``record_refusal`` on the command's database; a failure to reach it is logged, so the
    refusal the user is about to read stays the one printed."""
    from jobengine.audit.record import record_refusal

    plain_id = None if object_id is None else str(object_id)
    try:
        with store(ctx) as engine:
            record_refusal(engine, cli_origin(), action, code, object_id=plain_id)
    except (JobEngineError, ConfigurationError) as exc:
        log.error("audit.refusal_not_recorded", action=action, code=code, error=str(exc))


def parse_time(option: str, value: str | None) -> datetime | None:
    """An ISO 8601 time with an offset; a naive one is refused, since whose clock it meant
    (the operator's, the server's) decides which entries match."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValidationError(
            f"{option} {value!r} is not an ISO 8601 time",
            hint="Write it like 2026-11-23T03:00:00+00:00 (or ...Z).",
        ) from None
    if parsed.tzinfo is None:
        raise ValidationError(
            f"{option} {value!r} has no timezone offset",
            hint=f"Add one, e.g. {value.strip()}+00:00 or {value.strip()}Z.",
        )
    return parsed


_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(option: str, value: str) -> timedelta:
    match = _DURATION.match(value.strip().lower())
    if match is None:
        raise ValidationError(
            f"{option} {value!r} is not a duration",
            hint="Use a whole number and a unit: 90s, 30m, 12h, 7d or 2w.",
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def parse_json(option: str, value: str | None, *, object_only: bool = False) -> Any:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{option} is not valid JSON: {exc.msg} at character {exc.pos}",
            hint="""Quote it for the shell, e.g. '{"key": "value"}'.""",
        ) from None
    if object_only and not isinstance(parsed, dict):
        raise ValidationError(
            f"{option} must be a JSON object, not {type(parsed).__name__}",
            hint="""Give the keys to change, e.g. '{"limit": 10}'; null deletes a key.""",
        )
    return parsed


def parse_choices(option: str, values: Sequence[str], enum: type[Enum]) -> list[Any]:
    """Values of a repeatable option that must name members of ``enum``."""
    valid = {member.value: member for member in enum}
    parsed = []
    for value in values:
        member = valid.get(value.strip().lower())
        if member is None:
            raise ValidationError(
                f"{option} {value!r} is not one of the known values",
                hint=f"Use one of: {', '.join(valid)}.",
            )
        parsed.append(member)
    return parsed


def job_types(engine: Engine) -> Catalogue:
    """The fleet's catalogue, as the workers announced it: the CLI never imports handler code,
    so it needs none of the handler modules installed where it runs."""
    return Catalogue(engine)


@dataclass
class RecordingPublisher:
    """A publisher that remembers what reached the broker, so a command can say whether its
    jobs are on their way or left for the leader."""

    inner: Publisher
    sent: set[int] = field(default_factory=set)
    error: str | None = None

    def publish(self, ref: DispatchRef, countdown: float | None = None) -> None:
        self._attempt([ref], lambda: self.inner.publish(ref, countdown))

    def publish_chunk(self, refs: Sequence[DispatchRef]) -> None:
        self._attempt(refs, lambda: self.inner.publish_chunk(refs))

    def _attempt(self, refs: Sequence[DispatchRef], send: Callable[[], None]) -> None:
        try:
            send()
        except Exception as exc:
            self.error = one_line(str(exc)).rstrip(".") or type(exc).__name__
            raise
        self.sent.update(ref.id for ref in refs)


def broker_publisher(settings: Settings) -> RecordingPublisher | None:
    """A publisher on the configured broker, or on this installation's embedded Redis when it
    already runs; None otherwise. A command never starts a broker: a Redis started and stopped
    around one publish would take its message with it, and the leader publishes anyway."""
    from jobengine.fleet import make_publisher  # Celery is imported only when publishing

    url = settings.broker_url
    if url is None:
        embedded = EmbeddedRedis(embedded_redis_dir(settings))
        if not embedded.running():
            return None
        url = embedded.url
    return RecordingPublisher(make_publisher(settings, url))


def dispatch_note(publisher: RecordingPublisher | None, what: str) -> str:
    """Why a scheduled job is not yet on the broker, and who will put it there."""
    why = (
        "no broker configured or running here"
        if publisher is None
        else f"broker unreachable: {publisher.error}"
    )
    return f"{what} not published ({why}); the leader will publish it"


class BrokerRevoker:
    """Reaches the broker only when a running job's task must be stopped, so a cancel of jobs
    that were not running needs no broker at all."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def revoke(self, task_id: str, *, terminate: bool = False, signal: str = "SIGTERM") -> None:
        from jobengine.fleet import publisher_app
        from jobengine.services import resolve_broker_url

        broker_url, _ = resolve_broker_url(self._settings)
        control = publisher_app(self._settings, broker_url).control
        control.revoke(task_id, terminate=terminate, signal=signal)
