"""Sealed mode for a worker's child processes: each starts in a network namespace of its own.

The socket guard of ``jobengine.sealed`` lives in the worker's Python process, so a command
started from a handler (``shell``, or any handler's ``subprocess``) would open sockets freely.
In sealed mode every child started through ``subprocess`` (``Popen``, ``run``, ``check_output``,
``asyncio``'s subprocesses, ``os.popen``) and ``os.system`` is started by ``unshare`` in a new
network namespace: ``unshare --net`` when the worker may (root, or ``CAP_SYS_ADMIN``),
else ``unshare --map-root-user --net`` through an unprivileged user namespace. Whether either
works is probed once, when the worker seals itself.

A new network namespace has no interface but its own loopback, and that loopback is down:
a child cannot reach any address at all, not even ``127.0.0.1`` (a service on the worker's own
host, a local proxy), and name lookups over the network fail. Unix-domain sockets on the
filesystem are not namespaced and still work, as they do for the worker itself. Under the
user-namespace variant the child sees itself as uid 0, mapped to the worker's own user.

Where neither variant works, no child process can be contained, so none is started: the call
raises ``SealedChildNotIsolated``, which fails the job for good (its dead letter carries the
code). Programs that fork and exec by other means (``os.exec*``, ``os.posix_spawn``, C
libraries) are outside this guard, as C sockets are outside the socket guard.
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

import structlog

from jobengine.failures import NonRetryableError

log = structlog.get_logger("jobengine.sealed")

PROBE_TIMEOUT_SECONDS = 10.0
WAYS: tuple[tuple[str, ...], ...] = (("--net",), ("--map-root-user", "--net"))
"""``unshare`` flags to try, in order: a plain network namespace, then one inside an
unprivileged user namespace."""


class SealedChildNotIsolated(NonRetryableError, PermissionError):
    """Also a ``PermissionError``, as a refused ``exec`` would be: code that copes with a
    program it cannot start (``platform``'s ``uname -p``, Celery's banner) copes with this."""

    code = "SEALED_CHILD_NOT_ISOLATED"


_POPEN_INIT = subprocess.Popen.__init__
_POPEN_SIGNATURE = inspect.signature(_POPEN_INIT)
_OS_SYSTEM = os.system
_state: dict[str, tuple[str, ...] | None] = {}


def probe() -> tuple[str, ...] | None:
    """The argv prefix that runs a command in a network namespace of its own, or None.

    Each way is tried for real (``unshare … -- true``): a kernel, a container runtime or a
    sysctl may forbid namespaces whatever the binary says.
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    for flags in WAYS:
        argv = (unshare, *flags, "--")
        try:
            done = subprocess.run(
                [*argv, "true"], capture_output=True, timeout=PROBE_TIMEOUT_SECONDS, check=False
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return argv
    return None


def contained(args: Any, executable: Any, shell: bool, prefix: Sequence[str] | None) -> list[str]:
    """The argv that runs what ``Popen(args, executable=…, shell=…)`` would, inside the
    namespace; ``SealedChildNotIsolated`` when there is no ``prefix`` to run it with."""
    if prefix is None:
        raise SealedChildNotIsolated(
            "sealed mode: this worker cannot start child processes in a network namespace of "
            "their own (unshare --net is not permitted here), so it starts none; run the worker "
            "as root or where user namespaces are allowed, or unseal it (JOBENGINE_SEALED)",
        )
    single = isinstance(args, str | bytes | os.PathLike)
    argv = [os.fsdecode(args)] if single else [os.fsdecode(a) for a in args]
    if shell:
        argv = [os.fsdecode(executable) if executable else "/bin/sh", "-c", *argv]
    elif executable is not None:
        argv = [os.fsdecode(executable), *argv[1:]]
    return [*prefix, *argv]


def _popen_init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
    bound = _POPEN_SIGNATURE.bind(self, *args, **kwargs)
    given = bound.arguments
    given["args"] = contained(
        given["args"], given.get("executable"), bool(given.get("shell")), _state["prefix"]
    )
    given["executable"] = None
    given["shell"] = False
    _POPEN_INIT(*bound.args, **bound.kwargs)


def _system(command: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> int:
    """``os.system`` through the guarded ``Popen``, with the same wait-status result."""
    code = subprocess.call(os.fsdecode(command), shell=True)
    return -code if code < 0 else code << 8


def install() -> tuple[str, ...] | None:
    """Contain every child process of this process from now on; returns the prefix used
    (None: children are refused). Probes once; idempotent."""
    if "prefix" in _state:
        return _state["prefix"]
    prefix = probe()
    _state["prefix"] = prefix
    subprocess.Popen.__init__ = _popen_init  # type: ignore[method-assign]
    os.system = _system
    if prefix is None:
        log.warning("sealed_children_refused", why="no network namespace can be created here")
    else:
        log.info("sealed_children_isolated", via=" ".join(prefix[1:-1]))
    return prefix
