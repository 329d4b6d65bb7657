"""A fleet across hosts (``tests/chaos/hosts.py``): Postgres and Redis on one host, the API, two
workers and the leader each on their own, everything talking over veth links and a bridge in
namespaces this test creates. What a deployment across machines relies on, shown here:

- jobs submitted through the API run on both worker hosts and complete once;
- a worker host whose link fails mid-run loses its leases, the leader on another host takes
  them back, the other worker finishes them, and once the link heals the cut-off worker's late
  completion is refused by its fencing token;
- the API cut off from the database host answers ``/readyz`` 503 and recovers by itself;
- the leader's host cut off: the reaper on the other reaper host leads and rescues a killed
  worker's jobs.

Each prints one JSON line of figures; ``make chaos`` runs them at full size, and the leader's
(covered on one host by ``test_scenarios``) only there.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from jobengine.api.keys import JOBS_READ, JOBS_WRITE
from tests.api.conftest import make_key
from tests.chaos.figures import Outcome, assert_nothing_lost, measure, open_jobs, rows
from tests.chaos.harness import (
    DEADLINE_S,
    LEADER_TTL_S,
    LEASE_TTL_S,
    REAPER_INTERVAL_S,
    RESULTS,
    SLACK_S,
    observer_engine,
    tunable,
)
from tests.chaos.hosts import REDIS_PORT, TENANT, ApiOverLinks, HostFleet, HostNetwork
from tests.chaos.netns import unavailable
from tests.chaos.servers import ENGINE_APP_PATTERNS, ChaosPostgres, ChaosRedis
from tests.fleet.conftest import wait_until

pytestmark = pytest.mark.chaos

JOBS = int(tunable("HOSTS_JOBS", 100, 1000))
CUT_JOBS = int(tunable("HOSTS_CUT_JOBS", 150, 1000))
JOB_MS = int(tunable("HOSTS_JOB_MS", 100, 100))
WORKER_HOSTS = ("w1", "w2")
NOT_READY_WITHIN_S = 3
"""The readiness probes of deploy/ give /readyz 3 s (Kubernetes' timeoutSeconds, Compose's
urllib timeout): on a silent link its own 2 s connect timeout answers within that (it took
36.6 s through the API's pool)."""
REQUEST_REFUSED_WITHIN_S = 15
"""A request over a silent link: the API's TCP user timeout (5 s) for its pooled connection's
ping, then a fresh connection's connect timeout (5 s), well before a client's usual 30 s."""


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[HostFleet]:
    """The network, Postgres and Redis on the db host (migrated, empty); no fleet process yet."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(f"no fleet across hosts on this machine: {reason}")
    net = HostNetwork(tag=str(os.getpid() % 100_000), subnet=os.getpid() % 200 + 20)
    with ExitStack() as stack:
        net.create()
        stack.callback(net.delete)
        db_ns, db_addr = net.ns("db"), net.addr("db")
        pg = ChaosPostgres(tmp_path / "pg", listen=db_addr, netns=db_ns, trusted_client=net.cidr)
        stack.callback(pg.stop)
        pg.start()
        broker = ChaosRedis(tmp_path / "redis", port=REDIS_PORT, bind=db_addr, netns=db_ns)
        stack.callback(broker.stop)
        broker.start()
        (tmp_path / "logs").mkdir()
        (tmp_path / "release").mkdir()
        fleet = HostFleet(
            db_url=pg.url,
            broker_url=broker.url,
            logs=tmp_path / "logs",
            engine=observer_engine(pg.socket_url),
            ledger=tmp_path / "ledger",
            pg=pg,
            broker=broker,
            net=net,
            release_dir=tmp_path / "release",
        )
        stack.callback(fleet.engine.dispose)
        stack.callback(fleet.stop_all)
        yield fleet


def start(fleet: HostFleet) -> ApiOverLinks:
    """The leader on the reaper host, a worker on each worker host, the API on its own."""
    fleet.reaper_on("reaper", "reaper-1")
    key = make_key(fleet.engine, TENANT, JOBS_READ, JOBS_WRITE)
    # Side by side: each takes seconds to start.
    with ThreadPoolExecutor(len(WORKER_HOSTS) + 1) as pool:
        api = pool.submit(fleet.api_on, "api", key)
        list(pool.map(fleet.worker_on, WORKER_HOSTS))
        return api.result()


def submit(api: ApiOverLinks, count: int, **payload: Any) -> list[int]:
    """``count`` jobs through the API, 50 a request."""
    ids: list[int] = []
    for first in range(0, count, 50):
        batch = [
            {"type": "host_effect", "projectId": "hosts", "payload": {"n": n, **payload}}
            for n in range(first, min(first + 50, count))
        ]
        answer = api.post("/api/v1/jobs/batch", {"jobs": batch})
        assert answer.status_code == 201, answer.text
        ids += [job["id"] for job in answer.json()["jobs"]]
    return ids


def ledger_lines(fleet: HostFleet) -> list[tuple[int, int, str]]:
    """``(job_id, attempt, hostname)`` of every effect, in the order they ran."""
    if not fleet.ledger.exists():
        return []
    return [
        (int(job_id), int(attempt), host)
        for job_id, attempt, host, _ in map(str.split, fleet.ledger.read_text().splitlines())
    ]


def completed_by(fleet: HostFleet) -> dict[int, str]:
    """Each completed job and the host whose worker's completion Postgres accepted."""
    sql = "SELECT job_id, actor FROM job_history WHERE to_status = 'completed'"
    with fleet.engine.connect() as conn:
        return {int(job_id): str(actor).split(":")[0] for job_id, actor in rows(conn, sql)}


def dialed_from(fleet: HostFleet) -> tuple[set[str], set[str]]:
    """The addresses the fleet's Postgres connections and Redis clients come from (a
    connection over the unix socket shows as ``local``); the test's own are left out."""
    sql = (
        "SELECT coalesce(host(client_addr), 'local') FROM pg_stat_activity "
        "WHERE application_name LIKE ANY(%s)"
    )
    assert fleet.pg is not None and fleet.broker is not None
    with fleet.pg.connect() as conn:
        postgres = {str(addr) for (addr,) in conn.execute(sql, (ENGINE_APP_PATTERNS,))}
    clients = fleet.broker.client().client_list()
    redis = {str(c["addr"]).rsplit(":", 1)[0] for c in clients if c["cmd"] != "client"}
    return postgres, redis


def report(figures: dict[str, Any], evidence: dict[str, Any]) -> None:
    print(json.dumps(figures))
    print(json.dumps({"scenario": figures["scenario"], **evidence}))
    RESULTS.append({**figures, **evidence})


@pytest.mark.chaos_quick
def test_jobs_submitted_through_the_api_host_run_on_both_worker_hosts_and_complete_once(
    hosts: HostFleet,
) -> None:
    api = start(hosts)
    started = time.monotonic()
    ids = submit(api, JOBS, ms=JOB_MS // 5)
    wait_until(lambda: open_jobs(hosts.engine) == 0, DEADLINE_S, "every job final")
    took = time.monotonic() - started
    postgres_peers, redis_peers = dialed_from(hosts)

    figures, evidence = measure(hosts.engine, hosts.ledger, "hosts_across_links", ids, None)
    by = completed_by(hosts)
    ran_on = {job_id: host for job_id, _, host in ledger_lines(hosts)}
    per_host = {host: sum(1 for h in by.values() if h == host) for host in sorted(set(by.values()))}
    evidence.update(
        completed_per_host=per_host,
        jobs_per_s=round(len(ids) / took, 1),
        postgres_dialed_from=sorted(postgres_peers),
        redis_dialed_from=sorted(redis_peers),
    )
    report(figures, evidence)

    assert evidence["by_status"] == {"completed": len(ids)}
    assert figures["double_finalized"] == 0, figures
    assert figures["effects_per_job"] == {"min": 1, "max": 1, "mean": 1.0}, figures
    assert set(per_host) == {HostNetwork.hostname(host) for host in WORKER_HOSTS}, per_host
    assert by == ran_on, "a completion signed by one host for an effect another host ran"
    fleet_hosts = {hosts.net.addr(host) for host in ("api", "reaper", *WORKER_HOSTS)}
    assert postgres_peers == fleet_hosts, "every role reaches Postgres over its link, only so"
    assert redis_peers <= fleet_hosts and set(map(hosts.net.addr, WORKER_HOSTS)) <= redis_peers


@pytest.mark.chaos_quick
def test_the_api_host_cut_off_from_the_db_host_answers_not_ready_and_recovers_by_itself(
    hosts: HostFleet,
) -> None:
    api = hosts.api_on("api", make_key(hosts.engine, TENANT, JOBS_READ, JOBS_WRITE))
    assert api.get("/readyz").status_code == 200

    hosts.net.sever("db", "api")
    cut_at = time.monotonic()
    not_ready = api.get("/readyz")
    answered_s = time.monotonic() - cut_at
    alive = api.get("/healthz").status_code
    asked_at = time.monotonic()
    refused = api.get("/api/v1/jobs")
    refused_s = time.monotonic() - asked_at
    hosts.net.mend("db", "api")
    healed_at = time.monotonic()
    wait_until(lambda: api.answers("/readyz") == 200, 60, "the API ready again")
    serves = api.get("/api/v1/jobs").status_code
    figures = {
        "scenario": "hosts_api_cut_from_db",
        "not_ready_answered_s": round(answered_s, 2),
        "ready_again_s": round(time.monotonic() - healed_at, 2),
        "request_refused_s": round(refused_s, 2),
    }
    report(figures, {"not_ready": not_ready.json()})

    assert not_ready.status_code == 503, not_ready.text
    assert answered_s < NOT_READY_WITHIN_S, f"/readyz took {answered_s:.1f}s to say not ready"
    body = not_ready.json()
    assert body["code"] == "NOT_READY" and body["retryable"] is True, body
    assert "postgres is down" in body["message"] and "redis is down" in body["message"], body
    assert alive == 200, "the API process itself stayed up while its database was out of reach"
    assert refused.status_code == 503 and refused.json()["retryable"] is True, refused.text
    assert refused_s < REQUEST_REFUSED_WITHIN_S, f"a request took {refused_s:.1f}s to be refused"
    assert serves == 200, "ready again, the API reads jobs through its pool again"


def history(fleet: HostFleet, job_id: int) -> list[tuple[str | None, str, str, str | None]]:
    """``(from, to, actor's host, reason)`` of each step of the job, in order."""
    sql = (
        "SELECT from_status, to_status, actor, reason FROM job_history "
        "WHERE job_id = :j ORDER BY id"
    )
    with fleet.engine.connect() as conn:
        steps: list[Any] = list(conn.execute(text(sql), {"j": job_id}))
    return [(src, dst, str(actor).split(":")[0], reason) for src, dst, actor, reason in steps]


def running_on(fleet: HostFleet, job_id: int) -> str | None:
    """The host whose worker holds the job's lease while it runs, else None."""
    sql = "SELECT lease_owner FROM jobs WHERE id = :j AND status = 'running'"
    with fleet.engine.connect() as conn:
        owner = conn.execute(text(sql), {"j": job_id}).scalar()
    return None if owner is None else str(owner).split(":")[0]


@pytest.mark.chaos_quick
def test_a_worker_host_cut_off_mid_run_has_its_jobs_finished_elsewhere_and_its_late_work_fenced(
    hosts: HostFleet,
) -> None:
    api = start(hosts)
    # One job whose first attempt runs until released: on whichever host takes it, it is
    # the attempt in flight that the cut meets and whose completion arrives after the heal.
    [held] = submit(api, 1, hold=True)
    cut_host_name = wait_until(lambda: running_on(hosts, held), 60, "the held job running")
    cut = next(h for h in WORKER_HOSTS if HostNetwork.hostname(h) == cut_host_name)
    other = next(h for h in WORKER_HOSTS if h != cut)
    ids = [held, *submit(api, CUT_JOBS, ms=JOB_MS)]
    wait_until(lambda: open_jobs(hosts.engine) <= len(ids) * 0.9, 120, "a tenth of the jobs final")

    hosts.net.cut(cut)
    cut_at = time.monotonic()
    try:
        wait_until(
            lambda: open_jobs(hosts.engine) == 0, DEADLINE_S, "every job final, one host cut"
        )
        recovered = time.monotonic() - cut_at
    finally:
        hosts.net.heal(cut)
    # Back on the network, the cut-off worker's heartbeat finds the lease gone; only then
    # does its held attempt return, and its completion meets the fence.
    wait_until(
        lambda: any(e["job_id"] == held for e in hosts.events(cut, "lease_lost")),
        60,
        f"{cut} finding the held job's lease lost after the heal",
    )
    (hosts.release_dir / str(held)).touch()
    wait_until(
        lambda: any(e["job_id"] == held for e in hosts.events(cut, "outcome_refused")),
        60,
        f"{cut}'s late completion of the held job refused",
    )

    outcome = measure(hosts.engine, hosts.ledger, "hosts_worker_cut", ids, recovered)
    figures, evidence = outcome
    steps = history(hosts, held)
    effects = [(attempt, host) for job_id, attempt, host in ledger_lines(hosts) if job_id == held]
    evidence.update(
        cut_host=cut,
        held_job_history=steps,
        held_job_effects=effects,
        refused_late=len(hosts.events(cut, "outcome_refused")),
        exited=hosts.exited(),
    )
    report(figures, evidence)

    assert_nothing_lost(Outcome(figures, evidence, bound_s=DEADLINE_S), recovery_bounded=False)
    assert evidence["lease_rescues"] >= 1, evidence
    # The held job: rescued by the leader (reaper-1, on the reaper host), completed once, by
    # the other worker host.
    rescues = [s for s in steps if (s[3] or "").startswith("lease_expired")]
    assert rescues and {s[2] for s in rescues} == {"reaper-1"}, steps
    completions = [s for s in steps if s[1] == "completed"]
    assert [s[2] for s in completions] == [HostNetwork.hostname(other)], steps
    # Both attempts ran their effect: the late one is the cut-off host's, refused by the fence.
    assert (1, HostNetwork.hostname(cut)) in effects and len(effects) == 2, effects
    assert recovered > LEASE_TTL_S, "every job final before a lease could even expire"
    assert hosts.exited() == [], "a process of the fleet ended by itself"


def test_the_leaders_host_cut_off_leaves_maintenance_to_the_reaper_on_the_other_host(
    hosts: HostFleet,
) -> None:
    reapers = {"reaper-a": hosts.reaper_on("reaper", "reaper-a")}
    wait_until(lambda: hosts.leader(reapers) == "reaper-a", 60, "reaper-a leading")
    reapers["reaper-b"] = hosts.reaper_on("reaper2", "reaper-b")
    with ThreadPoolExecutor(len(WORKER_HOSTS)) as pool:
        workers = dict(zip(WORKER_HOSTS, pool.map(hosts.worker_on, WORKER_HOSTS), strict=True))
    api = hosts.api_on("api", make_key(hosts.engine, TENANT, JOBS_READ, JOBS_WRITE))
    ids = submit(api, CUT_JOBS, ms=JOB_MS)
    wait_until(lambda: open_jobs(hosts.engine) <= len(ids) * 0.9, 120, "a tenth of the jobs final")

    hosts.net.cut("reaper")
    cut_at = time.monotonic()
    try:
        # A worker dies while the leader is out of reach: only the other reaper can rescue.
        hosts.kill(workers["w1"])
        wait_until(
            lambda: hosts.leader(reapers) == "reaper-b",
            LEADER_TTL_S + REAPER_INTERVAL_S + SLACK_S,
            "reaper-b leading while reaper-a's host is cut off",
        )
        took_over = time.monotonic() - cut_at
        wait_until(lambda: open_jobs(hosts.engine) == 0, DEADLINE_S, "every job final")
        recovered = time.monotonic() - cut_at
    finally:
        hosts.net.heal("reaper")

    figures, evidence = measure(hosts.engine, hosts.ledger, "hosts_leader_cut", ids, recovered)
    with hosts.engine.connect() as conn:
        rescuers = {
            str(actor)
            for (actor,) in rows(
                conn, "SELECT actor FROM job_history WHERE reason LIKE 'lease_expired%'"
            )
        }
    evidence.update(took_over_s=round(took_over, 2), rescued_by=sorted(rescuers))
    report(figures, evidence)

    assert_nothing_lost(Outcome(figures, evidence, bound_s=DEADLINE_S), recovery_bounded=False)
    assert evidence["lease_rescues"] >= 1, "the killed worker held no job: nothing was rescued"
    assert rescuers == {"reaper-b"}, rescuers
