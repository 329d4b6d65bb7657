"""Sealed mode holds for a handler's child processes: a ``shell`` child cannot reach even a
loopback listener, because it runs in a network namespace of its own; where no namespace can be
made, the sealed worker starts no child at all and the job is dead-lettered saying why.

The listener is the test's own, on loopback; it counts connections and bytes, so the test sees
both that the sealed child sent nothing and that the same job unsealed does connect.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from jobengine import sealed_children
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.producer import submit_jobs
from jobengine.sealed_children import SealedChildNotIsolated, contained
from jobengine.store.database import transaction
from jobengine.store.dead_letter_repository import DeadLetterRepository
from tests.fleet.conftest import Fleet, wait_until

S = JobStatus
NO_RETRY = {"max_retries": 0}


@dataclass
class Listener:
    """A loopback listener that records every connection and every byte it receives."""

    sock: socket.socket
    connections: int = 0
    received: bytearray = field(default_factory=bytearray)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(5)
                while chunk := conn.recv(4096):
                    self.received += chunk


@pytest.fixture
def listener() -> Iterator[Listener]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    found = Listener(sock)
    thread = threading.Thread(target=found.serve, daemon=True)
    thread.start()
    yield found
    found.stop.set()
    thread.join(5)
    sock.close()


def phone_home(port: int) -> NewJob:
    code = f"import socket; socket.create_connection(('127.0.0.1', {port}), 5).sendall(b'leak')"
    command = [sys.executable, "-c", code]
    return NewJob(type="shell", payload={"command": command}, retry_policy=NO_RETRY)


def dead_letter_code(fleet: Fleet, job_id: int) -> tuple[str, str | None]:
    with transaction(fleet.engine) as conn:
        letters = DeadLetterRepository(conn)
        entry = letters.get(letters.id_for_job(job_id) or 0)
    assert entry is not None
    return entry.reason.value, entry.error_code


def test_a_sealed_workers_shell_child_cannot_reach_a_loopback_listener_unsealed_it_can(
    fleet: Fleet, listener: Listener
) -> None:
    isolated = sealed_children.probe() is not None
    sealed = fleet.start_worker("sealed", JOBENGINE_SEALED="1")
    [blocked] = submit_jobs(fleet.engine, fleet.publisher(), [phone_home(listener.port)])
    wait_until(lambda: fleet.job(blocked.id).status is S.FAILED, 60, "sealed child fails")
    final = fleet.job(blocked.id)
    assert final.last_error is not None and final.attempt == 1
    if isolated:
        assert final.last_error["code"] == "COMMAND_FAILED"
        assert "Network is unreachable" in final.last_error["details"]["stderr"]
        assert "sealed_children_isolated" in fleet.log_of("sealed")
    else:
        assert final.last_error["code"] == "SEALED_CHILD_NOT_ISOLATED"
    assert listener.connections == 0 and bytes(listener.received) == b""
    fleet.kill(sealed)

    fleet.start_worker("open")
    [free] = submit_jobs(fleet.engine, fleet.publisher(), [phone_home(listener.port)])
    wait_until(lambda: fleet.job(free.id).status is S.COMPLETED, 60, "unsealed child connects")
    wait_until(lambda: bytes(listener.received) == b"leak", 10, "the listener got the bytes")
    assert listener.connections == 1


def test_a_sealed_worker_that_cannot_make_namespaces_starts_no_child_and_dead_letters_the_job(
    fleet: Fleet, listener: Listener, tmp_path: Path
) -> None:
    no_unshare = tmp_path / "bin"  # a PATH without unshare: no namespace can be made
    no_unshare.mkdir()
    fleet.start_worker("sealed", JOBENGINE_SEALED="1", PATH=str(no_unshare))
    retrying = {"max_retries": 3, "base_delay_seconds": 0, "jitter": "none"}
    [job] = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [replace(phone_home(listener.port), retry_policy=retrying)],
    )
    wait_until(lambda: fleet.job(job.id).status is S.FAILED, 60, "refused child")

    final = fleet.job(job.id)
    assert final.attempt == 1  # never retried, though the policy grants retries
    assert final.last_error is not None
    assert final.last_error["code"] == "SEALED_CHILD_NOT_ISOLATED"
    assert "network namespace" in final.last_error["message"]
    assert dead_letter_code(fleet, job.id) == ("non_retryable", "SEALED_CHILD_NOT_ISOLATED")
    assert "sealed_children_refused" in fleet.log_of("sealed")
    assert listener.connections == 0 and bytes(listener.received) == b""


def test_a_child_is_started_through_the_namespace_prefix_as_popen_would_run_it() -> None:
    prefix = ("/usr/bin/unshare", "--net", "--")
    assert contained(["ls", "-l"], None, False, prefix) == [*prefix, "ls", "-l"]
    assert contained("echo $HOME", None, True, prefix) == [*prefix, "/bin/sh", "-c", "echo $HOME"]
    assert contained(["echo $0", "x"], "/bin/bash", True, prefix) == [
        *prefix,
        "/bin/bash",
        "-c",
        "echo $0",
        "x",
    ]
    assert contained(["name", "arg"], "/usr/bin/env", False, prefix) == [
        *prefix,
        "/usr/bin/env",
        "arg",
    ]
    assert contained(Path("/bin/true"), None, False, prefix) == [*prefix, "/bin/true"]
    with pytest.raises(SealedChildNotIsolated) as refused:
        contained(["true"], None, False, None)
    assert refused.value.code == "SEALED_CHILD_NOT_ISOLATED"
    assert "JOBENGINE_SEALED" in str(refused.value)
