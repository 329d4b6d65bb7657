"""A write that committed but whose answer never came back: the retry finds the job already
moved by it (same fencing token, the state it was going to) and takes that as done.

The answer is lost for real: the executor talks to Postgres through a loopback relay that,
once armed, lets the statement through and drops the connection instead of the reply.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import suppress

import pytest
import structlog
from sqlalchemy import Engine, make_url

from jobengine import guard
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.execution import Executor
from jobengine.store.database import normalize_url, transaction, unpooled_engine
from jobengine.store.history_repository import JobHistoryRepository

S = JobStatus
OWNER = "test-host:1"
BUFFER = 65536
PREPARED_EXECUTION = b"B"
"""A message that starts with Bind runs a prepared statement: only the per-job statements are
prepared (``store.database.run_all``), and each test prepares its own before arming."""


class AnswerDropper:
    """A TCP relay to Postgres; once armed, the next prepared statement run goes through and
    its reply is swallowed, the link cut."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.armed = threading.Event()
        self.sent = threading.Event()
        self.dropped = threading.Event()
        self._sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self) -> None:
        self.dropped.clear()
        self.armed.set()

    def close(self) -> None:
        for sock in [self.listener, *self._sockets]:
            with suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(BUFFER):
                if not replies and self.armed.is_set() and data.startswith(PREPARED_EXECUTION):
                    self.armed.clear()
                    self.sent.set()
                elif replies and self.sent.is_set():
                    self.sent.clear()
                    self.dropped.set()
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@pytest.fixture
def relay(db_url: str) -> Iterator[tuple[AnswerDropper, Executor]]:
    url = make_url(normalize_url(db_url))
    dropper = AnswerDropper(url.host or "127.0.0.1", url.port or 5432)
    relayed = url.set(host="127.0.0.1", port=dropper.port).render_as_string(hide_password=False)
    engine = unpooled_engine(relayed, application_name="test-relayed")
    try:
        yield dropper, Executor(engine, lease_ttl_seconds=30)
    finally:
        dropper.close()
        engine.dispose()


def _scheduled_job(engine: Engine) -> int:
    with transaction(engine) as conn:
        job = guard.create_job(conn, NewJob(type="noop"), schedule=True)
    assert job is not None
    return job.id


def _moves(engine: Engine, job_id: int) -> list[tuple[JobStatus | None, JobStatus]]:
    with transaction(engine) as conn:
        return [(h.from_status, h.to_status) for h in JobHistoryRepository(conn).for_job(job_id)]


def test_a_completion_whose_answer_was_lost_is_found_committed_not_refused(
    relay: tuple[AnswerDropper, Executor], engine: Engine
) -> None:
    dropper, executor = relay
    warm = executor.claim(_scheduled_job(engine), OWNER)
    assert warm is not None and executor.complete(warm, None) is not None  # both prepared
    job_id = _scheduled_job(engine)
    claim = executor.claim(job_id, OWNER)
    assert claim is not None

    dropper.arm()
    with structlog.testing.capture_logs() as logs:
        done = executor.complete(claim, {"ok": True})

    assert dropper.dropped.is_set()
    assert done is not None and done.status is S.COMPLETED and done.result == {"ok": True}
    events = [entry["event"] for entry in logs]
    assert "outcome_found_committed" in events and "outcome_refused" not in events
    assert _moves(engine, job_id).count((S.RUNNING, S.COMPLETED)) == 1


def test_a_claim_whose_answer_was_lost_is_still_this_workers_claim(
    relay: tuple[AnswerDropper, Executor], engine: Engine
) -> None:
    dropper, executor = relay
    assert executor.claim(_scheduled_job(engine), OWNER) is not None  # the claim is prepared
    job_id = _scheduled_job(engine)

    dropper.arm()
    with structlog.testing.capture_logs() as logs:
        claim = executor.claim(job_id, OWNER)

    assert dropper.dropped.is_set()
    assert claim is not None and claim.job.status is S.RUNNING and claim.attempt == 1
    assert "claim_found_committed" in [entry["event"] for entry in logs]
    assert _moves(engine, job_id).count((S.SCHEDULED, S.CLAIMED)) == 1
    assert executor.complete(claim, None) is not None  # its token is the job's current one
