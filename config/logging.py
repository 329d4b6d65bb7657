"""Structured logging, configured once per process.

Log calls carry ``job_id``, ``attempt`` and ``status`` as fields (never inside the message),
so an operator can filter one job's lines out of a whole fleet's output.

Each line reaches stderr in one ``write``: a worker's pool processes share its stderr, and
``print`` (structlog's PrintLogger) writes the line and its newline separately, so two
processes logging at once joined their lines into one that no JSON reader can parse.
"""

from __future__ import annotations

import logging
import sys

import structlog

_configured = False


def configure_logging(level: str = "INFO", json_lines: bool = False) -> None:
    """Set up structlog and the stdlib root logger; later calls are no-ops."""
    global _configured
    if _configured:
        return
    _configured = True
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format="%(message)s")
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
