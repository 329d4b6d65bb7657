"""``make dev``: the whole engine on private servers, with jobs visibly flowing.

It finds or starts Postgres and Redis, migrates, starts two Celery worker processes, the
reaper, Flower (behind a generated login) and the API (with the dev admin key, printed and
reused across runs; see ``dev_secrets``), then a demo producer whose jobs succeed, retry, fail
for good and get cancelled, with a live summary in a terminal and a plain status line every
few seconds when piped. Ctrl-C stops every
process it started and the servers it started, and leaves nothing behind. ``--once`` runs one
demo round, prints its timelines and exits (what the tests use).

Every process it starts gets the whole environment it was started with (``JOBENGINE_*``
included), so ``JOBENGINE_HANDLER_MODULES=myapp.jobs make dev`` runs the user's handlers and
``JOBENGINE_SEALED=1 make dev`` seals its workers; only the servers' URLs and the data folder
are set to what this run resolved. The demo's ``shell`` jobs need command-running types, so
they are turned on (and it says so) unless ``JOBENGINE_COMMAND_TYPES_ENABLED`` was set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from sqlalchemy import Engine, text

from config.logging import configure_logging
from config.settings import Settings, get_settings
from jobengine.cancellation import cancel_job
from jobengine.dev_env import FleetConfig, fleet_env
from jobengine.dev_secrets import DEV_KEY_FILE, FLOWER_FILE, dev_admin_key, flower_credentials
from jobengine.dispatch import Publisher
from jobengine.domain.job import Job, NewJob
from jobengine.domain.status import FINAL_STATES, JobStatus
from jobengine.embedded import EmbeddedPostgres, free_loopback_port
from jobengine.fleet import make_publisher
from jobengine.producer import submit_jobs
from jobengine.services import (
    URL_EXAMPLE,
    broker,
    database,
    embedded_postgres_dir,
    masked_url,
    upgrade_database,
)
from jobengine.store.database import make_engine, transaction
from jobengine.store.dead_letter_repository import DeadLetterRepository
from jobengine.store.history_repository import JobHistoryRepository
from jobengine.store.jobs_repository import JobsRepository

EXIT_INTERRUPTED = 130
DEMO_TENANT = "demo"
READY_TIMEOUT = 90.0


class DevError(Exception):
    """A fleet process did not come up; its log says why."""


@dataclass
class FleetProcesses:
    """The child processes of ``make dev``, each in its own session so one signal stops all
    of a process's children too."""

    logs: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )

    def log_of(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for(self, name: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready():
            if self.procs[name].poll() is not None:
                raise DevError(f"{name} exited early; see {self.logs / (name + '.log')}")
            if time.monotonic() > deadline:
                raise DevError(f"{name} not ready after {READY_TIMEOUT:.0f}s; see its log")
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def api_port(settings: Settings) -> int:
    """The configured API port, or any free one when it is taken (another `make dev`)."""
    return settings.api_port if _free(settings.api_port) else free_loopback_port()


def demo_markers(data_dir: Path) -> Path:
    """A fresh folder for this run's "fails once" markers, earlier runs' removed.

    The marker a job leaves on its first, failing try is what makes its retry succeed; kept
    from an earlier run (the data folder persists), it made the job succeed at once.
    """
    root = data_dir / "demo-markers"
    if root.exists():
        shutil.rmtree(root)
    run = root / f"run-{os.getpid()}-{time.time_ns()}"
    run.mkdir(parents=True)
    return run


def fails_once_command(marker_dir: Path, n: int) -> str:
    """A shell command that fails on its first try in this run and succeeds after."""
    flag = marker_dir / f"flaky-{n}"
    return f"test -f {flag} || {{ touch {flag}; echo 'first try fails' >&2; exit 1; }}"


def start_fleet(fleet: FleetProcesses, flower_port: int, port: int, flower_login: str) -> None:
    celery = [sys.executable, "-m", "celery", "-A", "workers.app"]
    for name in ("worker-1", "worker-2"):
        fleet.start(
            name,
            [
                *celery,
                "worker",
                "-P",
                "prefork",
                "-c",
                "1",
                "-n",
                f"{name}@%h",
                "-E",
                "-l",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
        )
    fleet.start("reaper", [sys.executable, "-m", "jobengine.fleet"])
    fleet.start(
        "flower",
        [
            sys.executable,
            "-m",
            "jobengine.flower_app",
            "--address=127.0.0.1",
            f"--port={flower_port}",
            f"--basic-auth={flower_login}",
        ],
    )
    fleet.env["JOBENGINE_API_HOST"] = "127.0.0.1"
    fleet.env["JOBENGINE_API_PORT"] = str(port)
    fleet.start("api", [sys.executable, "-m", "jobengine.api"])
    for name in ("worker-1", "worker-2"):
        fleet.wait_for(name, lambda n=name: "ready." in fleet.log_of(n))  # type: ignore[misc]
    fleet.wait_for("flower", lambda: _listening(flower_port))
    fleet.wait_for("api", lambda: _listening(port))


def demo_round(
    engine: Engine, publisher: Publisher, marker_dir: Path, n: int, *, commands: bool
) -> list[Job]:
    """One of each fate: success, progress, retried then successful, failed for good, cancelled.

    The retried and the failed job are ``shell`` commands, left out when ``commands`` is off.
    """
    quick_retry = {"max_retries": 2, "base_delay_seconds": 1, "jitter": "none"}
    shell_jobs = [
        NewJob(
            type="shell",
            payload={"command": fails_once_command(marker_dir, n)},
            retry_policy=quick_retry,
            tenant_id=DEMO_TENANT,
            project_id="dev",
        ),
        NewJob(
            type="shell",
            payload={"command": "echo 'always broken' >&2; exit 2"},
            retry_policy=quick_retry,
            tenant_id=DEMO_TENANT,
            project_id="dev",
        ),
    ]
    jobs = submit_jobs(
        engine,
        publisher,
        [
            NewJob(type="noop", tenant_id=DEMO_TENANT, project_id="dev"),
            NewJob(
                type="fake_inference",
                payload={"steps": 8, "step_seconds": 0.25, "prompt": f"round {n}"},
                tenant_id=DEMO_TENANT,
                project_id="dev",
            ),
            *(shell_jobs if commands else []),
            NewJob(
                type="noop",
                not_before=datetime.now(UTC) + timedelta(hours=1),
                tenant_id=DEMO_TENANT,
                project_id="dev",
            ),
        ],
        actor="dev-demo",
        commands_enabled=commands,
    )
    cancel_job(engine, jobs[-1].id, actor="dev-demo", reason="no longer needed")
    return jobs


def summary(engine: Engine, flower_url: str, rounds: int, config: FleetConfig) -> Group:
    with transaction(engine) as conn:
        counts = JobsRepository(conn).count_by_status()
        dead = DeadLetterRepository(conn).counts()
        recent = conn.execute(
            text(
                "SELECT h.job_id, j.type, h.from_status, h.to_status, h.attempt, h.actor, h.reason "
                "FROM job_history h JOIN jobs j ON j.id = h.job_id ORDER BY h.id DESC LIMIT 12"
            )
        ).all()
    states = Table(
        box=box.SIMPLE_HEAD, title=f"jobs by state (demo rounds: {rounds})", title_justify="left"
    )
    for status in JobStatus:
        states.add_column(status.value, justify="right")
    states.add_row(*(str(counts[s]) for s in JobStatus))
    moves = Table(box=box.SIMPLE_HEAD, title="latest transitions", title_justify="left")
    for name in ("job", "type", "from", "to", "attempt", "actor", "reason"):
        moves.add_column(name, no_wrap=name != "reason")
    for r in reversed(recent):
        moves.add_row(str(r[0]), r[1], r[2] or "-", r[3], str(r[4]), r[5], r[6] or "")
    letters = ", ".join(f"{c.type} {c.reason.value} x{c.count}" for c in dead) or "none"
    return Group(
        states,
        moves,
        *config.lines(),
        f"dead letters open: {letters}   (`jobengine dlq list`)",
        f"Flower: {flower_url}   (Ctrl-C stops everything)",
    )


STATUS_EVERY_SECONDS = 5.0
"""How often ``make dev`` prints its status line when its output is not a terminal."""


def status_line(engine: Engine, rounds: int, now: datetime) -> str:
    """The summary as one plain line, for output piped to a file or a CI log, where a live
    display would be redrawn escape codes and no text."""
    with transaction(engine) as conn:
        counts = JobsRepository(conn).count_by_status()
        dead = DeadLetterRepository(conn).counts()
    states = ", ".join(f"{s.value} {counts[s]}" for s in JobStatus)
    letters = sum(c.count for c in dead)
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp} demo rounds {rounds} | jobs: {states} | dead letters open: {letters}"


def timeline(engine: Engine, job: Job) -> Table:
    with transaction(engine) as conn:
        current = JobsRepository(conn).get(job.id)
        history = JobHistoryRepository(conn).for_job(job.id)
    table = Table(
        title=f"job {job.id} ({job.type}): {current.status}",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for name in ("from", "to", "attempt", "actor", "reason"):
        table.add_column(name)
    for h in history:
        table.add_row(
            h.from_status.value if h.from_status else "-",
            h.to_status.value,
            str(h.attempt),
            h.actor,
            h.reason or "",
        )
    return table


def _all_final(engine: Engine, jobs: list[Job]) -> bool:
    with transaction(engine) as conn:
        repo = JobsRepository(conn)
        return all(repo.get(j.id).status in FINAL_STATES for j in jobs)


def describe_servers(
    console: Console, settings: Settings, db_url: str, pg: EmbeddedPostgres | None, broker_url: str
) -> None:
    if settings.database_url:
        console.print(f"Postgres: {masked_url(db_url)} (from JOBENGINE_DATABASE_URL)")
    else:
        state = "started" if pg is not None else "already running, reused"
        where = embedded_postgres_dir(settings).resolve()
        console.print(f"Postgres: embedded, {state}: {db_url} (data: {where})", highlight=False)
        console.print(
            f"  To use an existing Postgres: JOBENGINE_DATABASE_URL={URL_EXAMPLE}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"Redis:    {broker_url}"
        + ("" if settings.broker_url else " (embedded; JOBENGINE_BROKER_URL to use another)"),
        highlight=False,
        soft_wrap=True,
    )


def run(
    settings: Settings | None = None, console: Console | None = None, *, once: bool = False
) -> int:
    """Everything ``make dev`` does; returns the exit code (0, or 130 after Ctrl-C)."""
    settings = settings or get_settings()
    console = console or Console()
    configure_logging(settings.log_level, settings.log_json)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    fleet: FleetProcesses | None = None
    try:
        with database(settings) as (db_url, pg), broker(settings) as (broker_url, _redis):
            describe_servers(console, settings, db_url, pg, broker_url)
            outcome = upgrade_database(db_url, "head")
            console.print(
                f"schema: {outcome.before or 'none'} -> {outcome.after} (head)", highlight=False
            )
            data_dir = settings.data_dir.resolve()
            logs = data_dir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            markers = demo_markers(data_dir)
            flower_login = flower_credentials(data_dir)
            env = fleet_env(
                os.environ,
                database_url=db_url,
                broker_url=broker_url,
                data_dir=data_dir,
            )
            config = FleetConfig.of(env, os.environ)
            for line in config.lines():
                console.print(line, highlight=False, soft_wrap=True)
            fleet = FleetProcesses(logs=logs, env=env)
            flower_port = free_loopback_port()
            flower_url = f"http://127.0.0.1:{flower_port}/"
            port = api_port(settings)
            console.print(
                f"starting 2 workers, the reaper, Flower and the API (logs: {logs})",
                highlight=False,
            )
            start_fleet(fleet, flower_port, port, flower_login)
            user, password = flower_login.split(":", 1)
            console.print(
                f"Flower: {flower_url} (user {user}, password {password}; kept in "
                f"{data_dir / FLOWER_FILE})",
                highlight=False,
                soft_wrap=True,
            )
            engine = make_engine(db_url)
            key = dev_admin_key(engine, data_dir, DEMO_TENANT)
            console.print(
                f"API:    http://127.0.0.1:{port}/api/v1 (docs: http://127.0.0.1:{port}/docs)\n"
                f"API key (admin, tenant {DEMO_TENANT}): {key} (kept in "
                f"{data_dir / DEV_KEY_FILE}; reused by the next run)",
                highlight=False,
                soft_wrap=True,
            )
            publisher = make_publisher(settings, broker_url)
            try:
                run_demo(engine, publisher, console, markers, flower_url, config, once=once)
            finally:
                engine.dispose()
                fleet.stop()
                fleet = None
    except KeyboardInterrupt:
        if fleet is not None:
            fleet.stop()
        console.print(
            "\ninterrupted: stopped the fleet and the servers we started", highlight=False
        )
        return EXIT_INTERRUPTED
    console.print("stopped the fleet and the servers we started", highlight=False)
    return 0


def piped_status(
    engine: Engine,
    publisher: Publisher,
    console: Console,
    marker_dir: Path,
    flower_url: str,
    *,
    commands: bool,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """The demo when output is piped: a plain status line every ``STATUS_EVERY_SECONDS``
    instead of a live display, a new round every 5 s, until Ctrl-C."""
    console.print(
        f"not a terminal: a status line every {STATUS_EVERY_SECONDS:.0f}s "
        f"(Flower: {flower_url}; Ctrl-C stops everything)",
        highlight=False,
        soft_wrap=True,
    )
    rounds = 1
    next_status = clock()
    next_round = next_status + 5
    while True:
        if clock() >= next_round:
            rounds += 1
            demo_round(engine, publisher, marker_dir, rounds, commands=commands)
            next_round = clock() + 5
        if clock() >= next_status:
            console.print(
                status_line(engine, rounds, datetime.now(UTC)), highlight=False, soft_wrap=True
            )
            console.file.flush()
            next_status = clock() + STATUS_EVERY_SECONDS
        sleep(0.5)


def run_demo(
    engine: Engine,
    publisher: Publisher,
    console: Console,
    marker_dir: Path,
    flower_url: str,
    config: FleetConfig,
    *,
    once: bool,
) -> None:
    commands = config.commands_enabled
    rounds = 1
    jobs = demo_round(engine, publisher, marker_dir, rounds, commands=commands)
    if once:
        deadline = time.monotonic() + READY_TIMEOUT
        while not _all_final(engine, jobs) and time.monotonic() < deadline:
            time.sleep(0.2)
        for job in jobs:
            console.print(timeline(engine, job))
        console.print(
            status_line(engine, rounds, datetime.now(UTC)), highlight=False, soft_wrap=True
        )
        return
    next_round = time.monotonic() + 5
    if not console.is_terminal:
        piped_status(engine, publisher, console, marker_dir, flower_url, commands=commands)
        return
    view = summary(engine, flower_url, rounds, config)
    with Live(view, console=console, refresh_per_second=4) as live:
        while True:
            time.sleep(0.5)
            if time.monotonic() >= next_round:
                rounds += 1
                demo_round(engine, publisher, marker_dir, rounds, commands=commands)
                next_round = time.monotonic() + 5
            live.update(summary(engine, flower_url, rounds, config))
