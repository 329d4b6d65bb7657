"""The benchmarks' CPU accounting counts work done by processes that exited in between."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from bench.proc_cpu import process_cpu_seconds, tree_cpu_seconds, tree_pids

BURN = 0.3

# A parent that, on "go", runs children burning CPU and reaps them; with "nested", the child
# burns in a grandchild that it reaps itself, so the time reaches the parent through two steps.
PARENT = textwrap.dedent(
    f"""
    import subprocess, sys
    burn = "import time\\nwhile time.process_time() < {BURN}: pass"
    nested = "import subprocess, sys; subprocess.run([sys.executable, '-c', %r])" % burn
    for line in sys.stdin:
        code = nested if line.strip() == "nested" else burn
        subprocess.run([sys.executable, "-c", code], check=True)
        print("done", flush=True)
    """
)


def _start_parent() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PARENT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _burn_in_child(parent: subprocess.Popen[str], how: str) -> None:
    assert parent.stdin is not None and parent.stdout is not None
    parent.stdin.write(how + "\n")
    parent.stdin.flush()
    assert parent.stdout.readline().strip() == "done"


def test_cpu_burnt_by_a_child_that_exited_before_the_second_reading_is_counted() -> None:
    parent = _start_parent()
    try:
        before = tree_cpu_seconds([parent.pid])
        _burn_in_child(parent, "flat")
        assert tree_pids([parent.pid]) == {parent.pid}
        used = tree_cpu_seconds([parent.pid]) - before
        assert used >= BURN * 0.9, used
    finally:
        parent.communicate(timeout=30)


def test_cpu_of_a_grandchild_reaped_by_a_child_that_exited_too_is_counted() -> None:
    parent = _start_parent()
    try:
        before = tree_cpu_seconds([parent.pid])
        _burn_in_child(parent, "nested")
        used = tree_cpu_seconds([parent.pid]) - before
        assert used >= BURN * 0.9, used
    finally:
        parent.communicate(timeout=30)


def test_an_excluded_process_is_left_out_of_its_tree() -> None:
    parent = _start_parent()
    try:
        _burn_in_child(parent, "flat")
        whole = tree_cpu_seconds([parent.pid])
        without_parent = tree_cpu_seconds([parent.pid], exclude=[parent.pid])
        assert without_parent == 0.0
        assert whole >= process_cpu_seconds(parent.pid) >= BURN * 0.9
    finally:
        parent.communicate(timeout=30)
