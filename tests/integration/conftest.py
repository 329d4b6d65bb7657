"""Fixtures for the integration tests that drive the CLI in-process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from jobengine.embedded import free_loopback_port


@pytest.fixture
def quiet_cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep log lines out of the captured stdout that ``--json`` tests parse.

    The CLI configures logging once per process, binding the ``sys.stderr`` of that moment
    (inside ``CliRunner``, a capture stream closed after the call); unconfigured structlog
    prints to stdout. Both are wrong in-process, so logs are dropped here.
    """
    monkeypatch.setattr("jobengine.cli.configure_logging", lambda *_args, **_kw: None)
    saved = structlog.get_config()
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    yield
    structlog.configure(**saved)


@pytest.fixture
def closed_broker() -> str:
    return f"redis://127.0.0.1:{free_loopback_port()}/0"
