"""One reaper leads, from the lease row; a killed or frozen leader is replaced within the
lease TTL plus one interval, and a frozen one that wakes acts no more."""

from __future__ import annotations

import signal
import subprocess
import time

from tests.fleet import handlers  # noqa: F401
from tests.fleet.conftest import Fleet, wait_until
from tests.fleet.leaders import (
    LEADER_TTL,
    REAPER_ENV,
    REAPER_INTERVAL,
    actions_by,
    last_history_id,
    live_leader,
    orphan_running_job,
    rescuers,
)

TAKEOVER_SLACK = 3.0
"""Seconds allowed beyond TTL + interval for process scheduling on a loaded 2-core machine."""


def _two_reapers(fleet: Fleet) -> tuple[dict[str, subprocess.Popen[bytes]], str, str]:
    procs = {name: fleet.start_reaper(name, **REAPER_ENV) for name in ("reaper-a", "reaper-b")}
    holder, _term = wait_until(lambda: live_leader(fleet.engine), 60, "a leader")
    [first] = orphan_running_job(fleet.engine)
    assert wait_until(lambda: rescuers(fleet.engine, [first]).get(first), 60, "a rescue") == holder
    follower = "reaper-b" if holder == "reaper-a" else "reaper-a"
    return procs, holder, follower


def test_two_reapers_one_leads_and_the_other_takes_over_within_the_ttl_when_it_is_killed(
    fleet: Fleet,
) -> None:
    procs, holder, follower = _two_reapers(fleet)
    term = live_leader(fleet.engine)
    assert term is not None and term[0] == holder

    fleet.kill(procs[holder])
    killed = time.monotonic()
    new = wait_until(
        lambda: (lead := live_leader(fleet.engine)) and lead[0] == follower and lead,
        60,
        "the follower leads",
    )
    took = time.monotonic() - killed
    assert took < LEADER_TTL + REAPER_INTERVAL + TAKEOVER_SLACK
    assert new[1] == term[1] + 1  # a new holder, a new term

    [second] = orphan_running_job(fleet.engine)
    assert wait_until(lambda: rescuers(fleet.engine, [second]).get(second), 60) == follower


def test_a_frozen_leader_is_replaced_and_once_thawed_does_nothing_until_it_leads_again(
    fleet: Fleet,
) -> None:
    procs, holder, follower = _two_reapers(fleet)

    fleet.kill(procs[holder], signal.SIGSTOP, wait=False)
    stopped = time.monotonic()
    wait_until(
        lambda: (lead := live_leader(fleet.engine)) and lead[0] == follower,
        60,
        "the follower leads",
    )
    assert time.monotonic() - stopped < LEADER_TTL + REAPER_INTERVAL + TAKEOVER_SLACK
    takeover = last_history_id(fleet.engine)

    # Leases that run out just as the frozen leader wakes: both reapers see them at once.
    racing = orphan_running_job(fleet.engine, lease_seconds=0.2, n=10)
    fleet.kill(procs[holder], signal.SIGCONT, wait=False)
    wait_until(lambda: len(rescuers(fleet.engine, racing)) == len(racing), 60, "all rescued")
    wait_until(lambda: "leadership_lost" in fleet.log_of(holder), 30, "the old leader noticed")
    [late] = orphan_running_job(fleet.engine)
    wait_until(lambda: rescuers(fleet.engine, [late]).get(late), 60, "a later rescue")

    assert set(rescuers(fleet.engine, [*racing, late]).values()) == {follower}
    assert actions_by(fleet.engine, holder, since_history_id=takeover) == []
    assert procs[holder].poll() is None
