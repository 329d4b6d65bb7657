"""The one-per-message benchmark's CPU split puts a pool process's time in the right part."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from bench.proc_cpu import prefork_cpu_seconds

BURN = 0.3

# A "pool process": on "task" it burns CPU in its main thread, on "other" in a thread of its
# own that then exits (a dead thread's time stays in its process's total).
CHILD = textwrap.dedent(
    f"""
    import sys, threading, time
    def burn():
        start = time.thread_time()
        while time.thread_time() - start < {BURN}:
            pass
    for line in sys.stdin:
        if line.strip() == "other":
            t = threading.Thread(target=burn)
            t.start()
            t.join()
        else:
            burn()
        print("done", flush=True)
    """
)

# A "consumer" that only relays lines to its one child and its answers back.
PARENT = textwrap.dedent(
    """
    import subprocess, sys
    child = subprocess.Popen(
        [sys.executable, "-c", sys.argv[1]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )
    for line in sys.stdin:
        child.stdin.write(line)
        child.stdin.flush()
        print(child.stdout.readline().strip(), flush=True)
    child.stdin.close()
    child.wait()
    """
)


def _ask(parent: subprocess.Popen[str], what: str) -> None:
    assert parent.stdin is not None and parent.stdout is not None
    parent.stdin.write(what + "\n")
    parent.stdin.flush()
    assert parent.stdout.readline().strip() == "done"


def test_cpu_of_a_pool_process_is_split_between_its_task_thread_and_its_other_threads() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        _ask(parent, "task")  # the child is up and has run once: its start-up is not measured
        before = prefork_cpu_seconds(parent.pid)
        _ask(parent, "task")
        middle = prefork_cpu_seconds(parent.pid)
        _ask(parent, "other")
        after = prefork_cpu_seconds(parent.pid)
    finally:
        parent.communicate(timeout=30)
    task = middle["pool task threads"] - before["pool task threads"]
    assert task >= BURN * 0.9, task
    assert middle["pool other threads"] - before["pool other threads"] < BURN / 3
    other = after["pool other threads"] - middle["pool other threads"]
    assert other >= BURN * 0.9, other
    assert after["pool task threads"] - middle["pool task threads"] < BURN / 3
    assert after["consumer"] - before["consumer"] < BURN / 3
