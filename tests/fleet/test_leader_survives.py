"""The reaper outlives its database: terminated backends, a Postgres restart, refused
connections and no free connection slot each cost it a few failed ticks, never its life."""

from __future__ import annotations

import time
from functools import partial

import psycopg
from sqlalchemy import Engine, text

from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, PrivatePostgres, wait_until
from tests.fleet.leaders import REAPER_ENV, live_leader, orphan_running_job, rescuers


def _reaper_backends(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'jobengine-reaper' "
                    "AND datname = current_database()"
                )
            )
        ]


def _new_backends(engine: Engine, seen: frozenset[int]) -> set[int]:
    return set(_reaper_backends(engine)) - seen


def _rescued_by(fleet: Fleet, name: str) -> None:
    [job] = orphan_running_job(fleet.engine)
    assert wait_until(lambda: rescuers(fleet.engine, [job]).get(job), 60, "a rescue") == name


def test_the_reaper_keeps_rescuing_while_its_backends_are_terminated_again_and_again(
    fleet: Fleet,
) -> None:
    proc = fleet.start_reaper("reaper-1", **REAPER_ENV)
    wait_until(lambda: live_leader(fleet.engine), 60, "a leader")
    killed: set[int] = set()
    for _ in range(10):
        pids: set[int] = wait_until(
            partial(_new_backends, fleet.engine, frozenset(killed)), 60, "the reaper reconnected"
        )
        with fleet.engine.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(p) FROM unnest(:p) AS p"), {"p": list(pids)}
            )
            conn.commit()
        killed |= pids
    assert proc.poll() is None, fleet.log_of("reaper-1")
    _rescued_by(fleet, "reaper-1")
    assert proc.poll() is None


def _take_every_slot_from_the_reaper(
    dsn: str, hogs: list[psycopg.Connection[tuple[object, ...]]]
) -> None:
    """Fill every slot (superusers' reserved ones too), then end the reaper's connections
    and take their slots as they free, until the reaper holds none."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        while True:
            try:
                hogs.append(psycopg.connect(dsn, autocommit=True))
            except psycopg.OperationalError:
                break
        ended = (
            hogs[0]
            .execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'jobengine-reaper'"
            )
            .fetchone()
        )
        if ended is not None and ended[0] == 0:
            return
    raise AssertionError("the reaper kept a connection for 60 s")


def test_the_reaper_outlives_a_postgres_crash_and_restart_and_rescues_after(
    private_pg: PrivatePostgres, private_fleet: Fleet
) -> None:
    proc = private_fleet.start_reaper("reaper-1", **REAPER_ENV)
    _rescued_by(private_fleet, "reaper-1")

    private_pg.restart_immediately()
    private_pg.engine.dispose()
    _rescued_by(private_fleet, "reaper-1")

    private_pg.pg_ctl("-m", "immediate", "stop")  # now refused for a while
    wait_until(
        lambda: private_fleet.log_of("reaper-1").count("reaper_tick_failed") >= 2,
        60,
        "failed ticks while Postgres is down",
    )
    assert proc.poll() is None, private_fleet.log_of("reaper-1")
    private_pg.server.start()
    private_pg.engine.dispose()
    _rescued_by(private_fleet, "reaper-1")
    assert proc.poll() is None


def test_with_every_connection_slot_taken_the_reaper_backs_off_and_rescues_once_one_frees(
    private_pg: PrivatePostgres, private_fleet: Fleet
) -> None:
    private_pg.restart_immediately(max_connections=8)
    private_pg.engine.dispose()
    proc = private_fleet.start_reaper("reaper-1", **REAPER_ENV)
    _rescued_by(private_fleet, "reaper-1")
    private_pg.engine.dispose()

    hogs: list[psycopg.Connection[tuple[object, ...]]] = []
    dsn = private_pg.url.replace("postgresql+psycopg://", "postgresql://")
    try:
        _take_every_slot_from_the_reaper(dsn, hogs)
        before = private_fleet.log_of("reaper-1").count("reaper_tick_failed")
        wait_until(
            lambda: private_fleet.log_of("reaper-1").count("reaper_tick_failed") >= before + 3,
            60,
            "ticks failing for want of a slot",
        )
        assert "too many clients" in private_fleet.log_of("reaper-1")
        assert proc.poll() is None, private_fleet.log_of("reaper-1")
    finally:
        for hog in hogs:
            hog.close()
    _rescued_by(private_fleet, "reaper-1")
    assert proc.poll() is None


def test_a_leader_held_up_by_a_stalled_lock_gives_up_within_its_timeout_and_leads_again(
    fleet: Fleet,
) -> None:
    proc = fleet.start_reaper("reaper-1", **REAPER_ENV)
    wait_until(lambda: live_leader(fleet.engine), 60, "a leader")
    with fleet.engine.connect() as blocker:
        blocker.execute(text("SELECT * FROM leadership FOR UPDATE"))  # held, as a stuck session
        wait_until(
            lambda: "lock timeout" in fleet.log_of("reaper-1"), 60, "the renewal gave up waiting"
        )
        assert proc.poll() is None
        blocker.rollback()
    _rescued_by(fleet, "reaper-1")
