"""OpenTelemetry traces from a job's submission to each attempt that runs it.

Off unless asked for: without ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or its traces-only twin), or
with ``OTEL_TRACES_EXPORTER=none`` or ``OTEL_SDK_DISABLED=true``, the API's default no-op
tracer provider stays in place, the SDK is never imported, no thread is started and nothing is
sent; while no provider is installed no span is even started, and a submission writes nothing
more. A process that installs its own provider (a producer service) gets our spans in it.

The trace context travels with the job in Postgres, never only in the broker's message, which
the leader or the reaper may make again: a submission puts its span's W3C ``traceparent`` in a
transaction-local setting (``jobengine.traceparent``) and every job the transaction inserts
takes it as its column's default (migration 0019), however it was inserted (one job, a batch,
a run). Retries, replays, promotion by the leader and re-publishing keep the row, so every
attempt finds the same producer span. A batch's jobs and a run's jobs share the span of the
call that submitted them: a run's child links to the run's submit span, not to its parents'
attempts (those are the same trace's consumers, one link away).

Each attempt is its own consumer span (``process <queue>``), a child of the producer span and
linked to it as the messaging conventions ask, with the job's id, type and attempt; the
outcome's write is a child span of it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import Connection

from jobengine.errors import JobEngineError

TRACER_NAME = "jobengine"
MESSAGING_SYSTEM = "jobengine"
"""Our own system name: the broker message is only a hint, the job row is what is consumed."""
TRACEPARENT_SETTING = "jobengine.traceparent"
"""The transaction-local setting a job's ``traceparent`` column defaults to."""

FASTAPI_TRACES_REQUESTS = importlib.util.find_spec("fastapi.telemetry") is not None
"""FastAPI's own telemetry (newer releases) already makes a server span per request, with
the global tracer provider ``configure`` installs; ``ServerSpans`` stands in where it does not."""

_W3C = TraceContextTextMapPropagator()
_configured: list[str] = []


class TracingMisconfigured(JobEngineError):
    code = "TRACING_MISCONFIGURED"


def wanted(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces to be exported (the standard variables)."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return bool(endpoint) or exporter == "otlp"


def configure(service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Install the exporting tracer provider once per process, if the environment asks; True
    when it did (now or earlier). Call it in the process that makes the spans, after any fork:
    the exporter's thread does not survive one."""
    if _configured:
        return True
    env = os.environ if env is None else env
    if not wanted(env):
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if exporter != "otlp" or protocol != "http/protobuf":
        raise TracingMisconfigured(
            f"traces can be exported only as OTLP over HTTP/protobuf, not exporter {exporter!r}"
            f" with protocol {protocol!r}",
            hint="Set OTEL_TRACES_EXPORTER=otlp and OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf,"
            " or unset OTEL_EXPORTER_OTLP_ENDPOINT to turn tracing off.",
        )
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise TracingMisconfigured(
            f"OTEL_EXPORTER_OTLP_ENDPOINT is set but the exporter is not installed ({exc.name})",
            hint="Install the extra: pip install 'jobengine[otel]', or unset the endpoint.",
        ) from exc
    name = env.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured.append(name)
    return True


def flush(timeout_millis: int = 5_000) -> None:
    """Export what this process's spans hold now (a worker process about to exit)."""
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush(timeout_millis)


_TRACER = trace.get_tracer(TRACER_NAME)
"""A proxy until ``configure`` installs a provider, then that provider's tracer."""


def _tracer() -> trace.Tracer:
    return _TRACER


def _off() -> bool:
    """No provider installed in this process (by ``configure`` or by the application): every
    span would be a no-op, so none is started and no context is parsed or attached."""
    return isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def traceparent_of(span: Span) -> str | None:
    """The W3C ``traceparent`` of ``span``; None for a span that records nothing (tracing
    off), even inside a caller's valid context, so a job stores only spans that exist."""
    if not span.is_recording() or not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current trace context to outgoing HTTP headers (the Python client)."""
    propagate.inject(headers)


@contextmanager
def incoming(headers: Mapping[str, str]) -> Iterator[None]:
    """Make a request's trace context (its ``traceparent`` header) the current one, so a
    client's span is the parent of what the API does for it."""
    token = otel_context.attach(propagate.extract(dict(headers)))
    try:
        yield
    finally:
        otel_context.detach(token)


@contextmanager
def client_call(method: str, path: str) -> Iterator[dict[str, str]]:
    """A client span around one request; yields the headers that carry it to the API. Named
    by the method alone: paths hold ids, and span names should not."""
    if _off():
        yield {}
        return
    with _tracer().start_as_current_span(
        method,
        kind=SpanKind.CLIENT,
        attributes={"http.request.method": method, "url.path": path},
    ):
        headers: dict[str, str] = {}
        inject(headers)
        yield headers


@contextmanager
def submitting(
    conn: Connection, operation: str, *, queue: str | None, jobs: int, actor: str
) -> Iterator[Span]:
    """A producer span around a submission; the jobs the transaction inserts inside it carry
    its context. With tracing off the span records nothing and nothing is written."""
    if _off():
        yield trace.INVALID_SPAN
        return
    attributes: dict[str, Any] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": operation,
        "messaging.batch.message_count": jobs,
        "jobengine.actor": actor,
    }
    if queue is not None:
        attributes["messaging.destination.name"] = queue
    name = f"{operation} {queue}" if queue is not None else operation
    with _tracer().start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes) as s:
        parent = traceparent_of(s)
        if parent is not None:
            conn.exec_driver_sql(
                "SELECT set_config(%(name)s, %(value)s, true)",
                {"name": TRACEPARENT_SETTING, "value": parent},
            )
        yield s


def producer_link(traceparent: str | None) -> trace.SpanContext | None:
    """The producer span a job's stored ``traceparent`` names; None when it has none."""
    if not traceparent:
        return None
    found = trace.get_current_span(_W3C.extract({"traceparent": traceparent})).get_span_context()
    return found if found.is_valid else None


@contextmanager
def processing(
    *, queue: str, job_type: str, job_id: int, attempt: int, traceparent: str | None
) -> Iterator[Span]:
    """The consumer span of one attempt: a child of the job's producer span and linked to it."""
    if _off():
        yield trace.INVALID_SPAN
        return
    producer = producer_link(traceparent)
    parent = (
        trace.set_span_in_context(trace.NonRecordingSpan(producer))
        if producer is not None
        else otel_context.Context()
    )
    with _tracer().start_as_current_span(
        f"process {queue}",
        context=parent,
        kind=SpanKind.CONSUMER,
        links=[Link(producer)] if producer is not None else None,
        attributes={
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": f"job-{job_id}-{attempt}",
            "jobengine.job.id": job_id,
            "jobengine.job.type": job_type,
            "jobengine.job.attempt": attempt,
        },
    ) as span:
        yield span


@contextmanager
def step(name: str, **attributes: Any) -> Iterator[Span]:
    """A child span of the current one (an attempt's outcome write)."""
    if _off():
        yield trace.INVALID_SPAN
        return
    with _tracer().start_as_current_span(name, attributes=attributes) as span:
        yield span


class ServerSpans:
    """ASGI middleware: a server span per HTTP request, the child of the caller's context
    (``traceparent`` header), so a client's call, the API's route and the job's producer
    span form one trace. Installed only where tracing is on and FastAPI makes no such span."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        with (
            incoming(headers),
            _tracer().start_as_current_span(
                method,
                kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "url.path": scope["path"]},
            ) as span,
        ):

            async def sending(message: Any) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                await send(message)

            try:
                await self.app(scope, receive, sending)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.set_attribute("http.route", route)
                    span.update_name(f"{method} {route}")
