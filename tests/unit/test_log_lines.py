"""A log line is one write: the processes of a worker share its stderr."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator

import pytest
import structlog

from config import logging as log_config


class WriteRecorder(io.StringIO):
    """A stderr that remembers each write it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.fixture
def fresh_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    saved = structlog.get_config()
    monkeypatch.setattr(log_config, "_configured", False)
    yield
    structlog.configure(**saved)


def test_each_json_log_line_reaches_stderr_whole_with_its_newline_in_one_write(
    fresh_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set here, not in a fixture: pytest's capture puts its own stderr back between phases.
    recorded_stderr = WriteRecorder()
    monkeypatch.setattr(sys, "stderr", recorded_stderr)
    log_config.configure_logging("INFO", json_lines=True)
    structlog.get_logger("test").warning("lease_lost", job_id=7, lease_token=3)
    structlog.get_logger("test").info("job_finished", job_id=8)

    assert len(recorded_stderr.writes) == 2
    for write in recorded_stderr.writes:
        assert write.endswith("\n") and write.count("\n") == 1
    assert [json.loads(w)["job_id"] for w in recorded_stderr.writes] == [7, 8]
