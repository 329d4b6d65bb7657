"""The client's SSE decoder, line by line, against the standard's rules."""

from __future__ import annotations

from jobengine.client._base import SSEDecoder, SSEMessage


def decode(lines: list[str]) -> tuple[list[SSEMessage], SSEDecoder]:
    decoder = SSEDecoder()
    messages = [m for line in lines if (m := decoder.feed(line)) is not None]
    return messages, decoder


def test_messages_end_at_blank_lines_and_keep_event_and_id() -> None:
    messages, decoder = decode(
        [
            ": keepalive",
            "id: 7-1",
            "event: job.transition",
            'data: {"a":',
            "data: 1}",
            "",
            "",
            "event: job.progress",
            "data:x",
            "",
            "retry: 1500",
            "id: 8-2",
            "data: unfinished",
        ]
    )
    assert messages == [
        SSEMessage(id="7-1", event="job.transition", data='{"a":\n1}'),
        SSEMessage(id="7-1", event="job.progress", data="x"),
    ]
    assert decoder.last_id == "8-2"  # the id is taken even though its message never ended
    assert decoder.retry_seconds == 1.5


def test_a_message_without_data_is_not_dispatched_and_resets_its_type() -> None:
    messages, _ = decode(["event: job.transition", "", "data: d", ""])
    assert messages == [SSEMessage(id=None, event="message", data="d")]
