"""A worker that reaches the broker but not Postgres gives every message it takes straight back,
for a worker that can claim it: nothing is lost, nothing waits for the lost-dispatch sweep, and
no job is held by the worker that is cut off."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import suppress

import pytest
from sqlalchemy import make_url

from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.producer import submit_jobs
from jobengine.store.database import normalize_url
from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until
from tests.fleet.routing_support import parent_of

S = JobStatus
N = 60
NO_SWEEP = {"JOBENGINE_REDISPATCH_AFTER_SECONDS": "600", "JOBENGINE_DISPATCH_CHUNK_SIZE": "1"}


class CuttableRelay:
    """A TCP relay to Postgres that can be cut: every link it carries is closed and every new
    one refused, as a host whose route to the database went down would see it."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.cut = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def sever(self) -> None:
        self.cut.set()
        with self._lock:
            for sock in self._sockets:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
            self._sockets.clear()

    def close(self) -> None:
        self.sever()
        with suppress(OSError):
            self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                client.close()
                continue
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with suppress(OSError):
                sock.close()


@pytest.fixture
def relay(db_url: str) -> Iterator[tuple[CuttableRelay, str]]:
    url = make_url(normalize_url(db_url))
    cuttable = CuttableRelay(url.host or "127.0.0.1", url.port or 5432)
    relayed = url.set(host="127.0.0.1", port=cuttable.port).render_as_string(hide_password=False)
    try:
        yield cuttable, relayed
    finally:
        cuttable.close()


def test_a_worker_cut_off_from_postgres_hands_every_message_back_to_one_that_can_claim_it(
    fleet: Fleet, relay: tuple[CuttableRelay, str]
) -> None:
    cuttable, relayed_url = relay
    fleet.start_worker("w-cut", concurrency=2, JOBENGINE_DATABASE_URL=relayed_url, **NO_SWEEP)
    healthy = fleet.start_worker("w-ok", concurrency=1, **NO_SWEEP)
    cuttable.sever()

    jobs = submit_jobs(fleet.engine, fleet.publisher(), [NewJob(type="effect") for _ in range(N)])
    ids = [job.id for job in jobs]
    wait_until(lambda: all(fleet.job(i).status is S.COMPLETED for i in ids), 120, "all completed")

    effects = fleet.effects()
    assert sorted(e[0] for e in effects) == sorted(ids)  # each job's effect ran once
    assert {e[1] for e in effects} == {1}  # at attempt 1: no lease was lost, nothing retried
    assert {parent_of(e[3]) for e in effects} == {healthy.pid}  # all run by the healthy one
    cut_log = fleet.log_of("w-cut")
    assert "handed_back=True" in cut_log  # it took messages, and gave them straight back
    assert "requeued=True" not in cut_log  # the broker was reachable: no message was held
