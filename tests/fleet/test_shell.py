"""``shell`` keeps a bounded tail of its output, and runs only where the installation opts in.

The bound is checked twice: the tail buffer never holds more than its limit whatever passes
through (a unit test), and a real worker running a command that writes 10 MiB to each stream
keeps the last 64 KiB of each, and its peak memory does not grow beyond what a job writing
1 MiB to each stream (the same result) already took.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from jobengine import guard
from jobengine.dispatch import publish_jobs
from jobengine.domain.job import NewJob
from jobengine.domain.status import JobStatus
from jobengine.producer import dispatch_ref, submit_jobs
from jobengine.store.database import transaction
from tests.fleet.conftest import Fleet, wait_until
from workers.handlers.builtin import OUTPUT_LIMIT
from workers.handlers.output import READ_BYTES, OutputTail

S = JobStatus
MIB = 1024 * 1024
LINE = b"0123456789abcde\n"  # 16 bytes: 10 MiB of it is a whole number of lines


def test_the_tail_never_holds_more_than_its_limit_and_keeps_the_last_bytes() -> None:
    rng = random.Random(7)
    tail = OutputTail(OUTPUT_LIMIT)
    written = bytearray()
    most_held = 0
    while len(written) < 10 * MIB:
        chunk = rng.randbytes(rng.choice([1, 100, 4096, READ_BYTES, 3 * READ_BYTES]))
        tail.feed(chunk)
        written += chunk
        most_held = max(most_held, tail.held)
    assert most_held == OUTPUT_LIMIT
    assert tail.total == len(written)
    assert tail.dropped == len(written) - OUTPUT_LIMIT
    last = bytes(written[-OUTPUT_LIMIT:]).decode("utf-8", errors="replace")
    assert tail.text() == last.replace("\x00", "\ufffd")


def test_output_with_nul_bytes_is_kept_as_storable_text() -> None:
    tail = OutputTail(16)
    tail.feed(b"a\x00b")
    assert tail.text() == "a\ufffdb" and tail.dropped == 0


def session_peak_rss_kib(session: int) -> dict[int, int]:
    """VmHWM (peak resident memory) of every live process in ``session``, by pid."""
    peaks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != session:
                continue
            status = (entry / "status").read_text()
        except (OSError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks[int(entry.name)] = int(line.split()[1])
    return peaks


def both_streams(size: int) -> str:
    """A command writing ``size`` bytes and an end marker to stdout, then the same to stderr."""
    return (
        f"yes 0123456789abcde | head -c {size}; echo stdout-end; "
        f"{{ yes 0123456789abcde | head -c {size}; echo stderr-end; }} >&2"
    )


def test_ten_mib_on_each_stream_keeps_the_last_64_kib_and_the_worker_does_not_swell(
    fleet: Fleet,
) -> None:
    worker = fleet.start_worker("w1")
    [warm] = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="shell", payload={"command": both_streams(MIB)})],
    )
    wait_until(lambda: fleet.job(warm.id).status is S.COMPLETED, 60, "warm-up shell job")
    before = session_peak_rss_kib(worker.pid)
    [big] = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="shell", payload={"command": both_streams(10 * MIB)})],
    )
    wait_until(lambda: fleet.job(big.id).status is S.COMPLETED, 120, "10 MiB shell job")
    after = session_peak_rss_kib(worker.pid)

    result = fleet.job(big.id).result
    assert result is not None
    for stream in ("stdout", "stderr"):
        kept = result[stream].encode()
        assert len(kept) == OUTPUT_LIMIT
        assert kept.endswith(f"\n{stream}-end\n".encode())
        assert result[f"{stream}_bytes"] == 10 * MIB + len(f"{stream}-end\n")
        assert result[f"{stream}_dropped_bytes"] == result[f"{stream}_bytes"] - OUTPUT_LIMIT
    # The warm-up job already produced a result of the same size (two full 64 KiB tails), so
    # what the 10 MiB job adds is what reading ten times more output costs: bounded, it is ~0.
    growth_kib = {pid: after.get(pid, 0) - peak for pid, peak in before.items()}
    assert max(growth_kib.values()) < 4 * 1024, f"peak memory grew by KiB, per pid: {growth_kib}"


def test_a_worker_without_the_opt_in_runs_no_command_even_for_a_job_already_stored(
    fleet: Fleet, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    fleet.start_worker("w1", JOBENGINE_COMMAND_TYPES_ENABLED="false")
    with transaction(fleet.engine) as conn:  # as if enqueued where the setting was on
        job = guard.create_job(
            conn,
            NewJob(
                type="shell",
                payload={"command": f"touch {marker}"},
                retry_policy={"max_retries": 0},
            ),
            schedule=True,
        )
    assert job is not None
    publish_jobs(fleet.engine, fleet.publisher(), [dispatch_ref(job)])
    [noop] = submit_jobs(fleet.engine, fleet.publisher(), [NewJob(type="noop")])
    wait_until(lambda: fleet.job(noop.id).status is S.COMPLETED, 60, "the worker runs noop")
    wait_until(lambda: "command_types_withheld" in fleet.log_of("w1"), 10, "withheld log")

    assert "shell" in fleet.log_of("w1").split("command_types_withheld", 1)[1].split("\n", 1)[0]
    assert not marker.exists()
    assert fleet.job(job.id).status is not S.COMPLETED


def test_cancelling_a_running_shell_job_stops_the_command_and_what_it_started(
    fleet: Fleet, tmp_path: Path
) -> None:
    from jobengine.cancellation import cancel_job

    pidfile = tmp_path / "grandchild.pid"
    fleet.start_worker("w1")
    command = f"sleep 300 & echo $! > {pidfile}; wait"
    [job] = submit_jobs(
        fleet.engine,
        fleet.publisher(),
        [NewJob(type="shell", payload={"command": command})],
    )
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 60, "command started")
    grandchild = int(pidfile.read_text())
    assert cancel_job(fleet.engine, job.id, actor="test", revoker=None).changed

    def gone() -> bool:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{grandchild}/stat").read_text().split()[2] == "Z"

    wait_until(gone, 30, "the command's own child was killed too")
    assert fleet.job(job.id).status is S.CANCELLED
