"""The audit log over a real server: every audited act leaves exactly one entry naming who did
it, from each surface that offers it (REST, the console, the CLI, Flower's revoke); refused
acts are filed as refused and tell nothing about another tenant; reads are tenant-scoped."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from jobengine.api.app import create_app
from jobengine.api.keys import ApiKeyStore
from jobengine.audit import ACTIONS, Origin
from jobengine.audit.rest import key_actor
from jobengine.cli_common import cli_actor
from jobengine.console.session import csrf_token
from jobengine.embedded import free_loopback_port
from jobengine.execution import Executor
from jobengine.store.database import make_engine, transaction
from tests.api.conftest import LiveServer, RecordingPublisher, api_settings, bearer, make_key
from tests.conftest import _drop_database, _fresh_database
from tests.console.conftest import Session, jobs_in, login  # noqa: F401  (a fixture)
from tests.integration.cli_support import dead_letter, invoke
from tests.integration.conftest import quiet_cli  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("quiet_cli")

ADMIN_NAME = "ops"
NAMES = itertools.count()
NO_ONE_OBJECT = {"dlq.purge", "jobs.prune"}
"""Acts on whatever matches their cutoff, not on one object."""
LIMIT = {"scope": "type", "jobType": "noop", "rate": 10, "per": "second", "burst": 2}
SCHEDULE = {"name": "nightly", "projectId": "p", "intervalSeconds": 3600, "job": {"type": "noop"}}
START, END = "2026-03-01T00:00:00Z", "2026-03-01T06:00:00Z"
BACKFILL = {
    "source": "orders",
    "projectId": "shop",
    "cron": "0 * * * *",
    "start": START,
    "end": END,
    "job": {"type": "noop"},
}
RUN = {
    "name": "pair",
    "projectId": "p",
    "jobs": [{"key": "A", "type": "noop"}, {"key": "B", "type": "noop"}],
    "edges": [{"parent": "A", "child": "B"}],
}


@dataclass
class World:
    """One admin operator on every surface at once."""

    engine: Engine
    db_url: str
    broker: str
    admin: httpx.Client
    """The admin key, acting for tenant acme."""
    reader: httpx.Client
    """The admin key with no tenant named: it reads every entry."""
    console: Session
    csrf: str
    actor: str

    def cli(self, *args: str) -> str:
        code, out, err = invoke(self.db_url, self.broker, *args)
        assert code == 0, err
        return out

    def ok(self, answer: httpx.Response) -> Any:
        assert answer.status_code < 300, answer.text
        return answer.json() if answer.content else None

    def form(self, path: str) -> None:
        answer = self.console.post(path, {"csrf": self.csrf})
        assert answer.status_code == 303, answer.text

    # objects to act on, made without the audit where the API would file them too
    def job(self) -> int:
        return jobs_in(self.engine, "acme")[0].id

    def dead_letter(self) -> int:
        return dead_letter(self.engine, tenant="acme")[0]

    def schedule(self) -> int:
        body = {**SCHEDULE, "name": f"nightly-{next(NAMES)}"}
        return int(self.ok(self.admin.post("/api/v1/schedules", json=body))["id"])

    def backfill(self) -> int:
        return int(self.ok(self.admin.post("/api/v1/backfills", json=BACKFILL))["backfill"]["id"])

    def run(self) -> int:
        return int(self.ok(self.admin.post("/api/v1/runs", json=RUN))["id"])


@contextmanager
def operator(live: LiveServer, engine: Engine, db_url: str) -> Iterator[World]:
    key = make_key(engine, "ops", "admin", name=ADMIN_NAME)
    with transaction(engine) as conn:
        [admin_key] = [k for k in ApiKeyStore(conn).list() if k.name == ADMIN_NAME]
    headers = {**bearer(key), "X-Tenant-Id": "acme"}
    with (
        httpx.Client(base_url=live.url, headers=headers, timeout=30) as admin,
        httpx.Client(base_url=live.url, headers=bearer(key), timeout=30) as reader,
        httpx.Client(base_url=live.url, timeout=30) as browser,
    ):
        assert browser.post("/console/login", data={"apiKey": key}).status_code == 303
        yield World(
            engine=engine,
            db_url=db_url,
            broker=f"redis://127.0.0.1:{free_loopback_port()}/0",
            admin=admin,
            reader=reader,
            console=Session(browser),
            csrf=csrf_token(key),
            actor=key_actor(admin_key),
        )


@pytest.fixture
def world(live: LiveServer, engine: Engine, db_url: str) -> Iterator[World]:
    with operator(live, engine, db_url) as w:
        yield w


@pytest.fixture(scope="module")
def one_world(pg_admin_url: str, migrated_template: str) -> Iterator[World]:
    """One database and server for every act: each act makes its own objects and counts
    only the entries after its own start, so they share what costs seconds to build."""
    name, url = _fresh_database(pg_admin_url, migrated_template)
    engine = make_engine(url, pool_size=10, max_overflow=20)
    app = create_app(
        api_settings(url),
        engine=engine,
        publisher=RecordingPublisher(),
        revoker=None,
        broker_check=lambda: None,
    )
    try:
        with LiveServer(app) as live, operator(live, engine, url) as w:
            yield w
    finally:
        engine.dispose()
        _drop_database(pg_admin_url, name)


@dataclass(frozen=True)
class Case:
    """How one surface does one act: ``setup`` makes the object (it may file entries of its
    own, made before the count starts), ``act`` acts on it. The entry names the object
    ``setup`` returned, or else the one ``act`` did."""

    setup: Callable[[World], Any]
    act: Callable[[World, Any], Any]


def then(setup: Callable[[World], Any], act: Callable[[World, Any], Any]) -> Case:
    return Case(setup, act)


def alone(act: Callable[[World], Any]) -> Case:
    return Case(lambda w: None, lambda w, _: act(w))


FLOWER_ORIGIN = Origin(actor="flower:ops", surface="flower", client_addr="127.0.0.1")


def _revoke(w: World, job_id: int) -> None:
    """What ``workers.hooks.record_revoke`` does with the note ``jobengine flower`` left for a
    revoke (the real path: ``tests/fleet/test_flower.py``)."""
    Executor(w.engine, lease_ttl_seconds=30).cancel(
        job_id, actor=FLOWER_ORIGIN.actor, reason="revoked", origin=FLOWER_ORIGIN
    )


def _cli_key(w: World) -> str:
    made = json.loads(
        w.cli(
            "keys", "create", "--tenant", "acme", "--name", "ci", "--scope", "jobs:read", "--json"
        )
    )
    return str(made["prefix"])


def _old_key(w: World) -> str:
    with transaction(w.engine) as conn:
        return ApiKeyStore(conn).create("acme", "old", ["jobs:read"]).key.prefix


def _limit(w: World) -> str:
    w.ok(w.admin.put("/api/v1/limits/noop-10s", json=LIMIT))
    return "noop-10s"


def _quota(w: World) -> str:
    w.ok(w.admin.put("/api/v1/quotas/acme", json={"maxQueued": 5}))
    return "acme"


def _fair(w: World) -> str:
    w.ok(w.admin.put("/api/v1/fair-queues/shared", json={"maxInFlight": 4}))
    return "shared"


def _queue_limit(w: World) -> str:
    w.cli("queues", "limit", "slow", "2")
    return "slow"


def _purge_ready(w: World) -> None:
    w.cli("dlq", "discard", str(w.dead_letter()))


CLI_SCHEDULE = ("--type", "noop", "--interval-seconds", "60", "--tenant", "acme", "--json")
CLI_BACKFILL = ("--start", START, "--end", END, "--type", "noop")


def _cli_backfill(w: World) -> int:
    out = w.cli("backfills", "create", "orders", *CLI_BACKFILL, "--cron", "0 * * * *", "--json")
    return int(json.loads(out)["backfill"]["id"])


ACTS: dict[tuple[str, str], Case] = {
    ("key.create", "cli"): alone(_cli_key),
    ("key.revoke", "cli"): then(_old_key, lambda w, p: w.cli("keys", "revoke", p)),
    ("queue_limit.set", "cli"): then(
        lambda w: "slow", lambda w, q: w.cli("queues", "limit", q, "2")
    ),
    ("queue_limit.delete", "cli"): then(_queue_limit, lambda w, q: w.cli("queues", "unlimit", q)),
    ("limit.set", "rest"): alone(_limit),
    ("limit.set", "cli"): then(
        lambda w: "noop-10s",
        lambda w, n: w.cli("limits", "set", n, "--rate", "10", "--burst", "2", "--type", "noop"),
    ),
    ("limit.delete", "rest"): then(
        _limit, lambda w, n: w.ok(w.admin.delete(f"/api/v1/limits/{n}"))
    ),
    ("limit.delete", "cli"): then(_limit, lambda w, n: w.cli("limits", "delete", n)),
    ("quota.set", "rest"): alone(_quota),
    ("quota.set", "cli"): then(
        lambda w: "acme", lambda w, t: w.cli("quotas", "set", t, "--max-queued", "5")
    ),
    ("quota.delete", "rest"): then(
        _quota, lambda w, t: w.ok(w.admin.delete(f"/api/v1/quotas/{t}"))
    ),
    ("quota.delete", "cli"): then(_quota, lambda w, t: w.cli("quotas", "delete", t)),
    ("fair_queue.set", "rest"): alone(_fair),
    ("fair_queue.set", "cli"): then(
        lambda w: "shared", lambda w, q: w.cli("quotas", "fair", "set", q)
    ),
    ("fair_queue.delete", "rest"): then(
        _fair, lambda w, q: w.ok(w.admin.delete(f"/api/v1/fair-queues/{q}"))
    ),
    ("fair_queue.delete", "cli"): then(_fair, lambda w, q: w.cli("quotas", "fair", "delete", q)),
    ("schedule.create", "rest"): alone(World.schedule),
    ("schedule.create", "cli"): alone(
        lambda w: json.loads(w.cli("schedules", "create", f"cli-{next(NAMES)}", *CLI_SCHEDULE))[
            "id"
        ]
    ),
    ("schedule.update", "rest"): then(
        World.schedule,
        lambda w, s: w.ok(w.admin.patch(f"/api/v1/schedules/{s}", json={"jitterSeconds": 5})),
    ),
    ("schedule.pause", "rest"): then(
        World.schedule, lambda w, s: w.ok(w.admin.post(f"/api/v1/schedules/{s}/pause"))
    ),
    ("schedule.pause", "cli"): then(
        World.schedule, lambda w, s: w.cli("schedules", "pause", str(s))
    ),
    ("schedule.pause", "console"): then(
        World.schedule, lambda w, s: w.form(f"/console/schedules/{s}/pause")
    ),
    ("schedule.resume", "rest"): then(
        World.schedule, lambda w, s: w.ok(w.admin.post(f"/api/v1/schedules/{s}/resume"))
    ),
    ("schedule.resume", "cli"): then(
        World.schedule, lambda w, s: w.cli("schedules", "resume", str(s))
    ),
    ("schedule.resume", "console"): then(
        World.schedule, lambda w, s: w.form(f"/console/schedules/{s}/resume")
    ),
    ("schedule.delete", "rest"): then(
        World.schedule, lambda w, s: w.ok(w.admin.delete(f"/api/v1/schedules/{s}"))
    ),
    ("schedule.delete", "cli"): then(
        World.schedule, lambda w, s: w.cli("schedules", "delete", str(s))
    ),
    ("backfill.create", "rest"): alone(World.backfill),
    ("backfill.create", "cli"): alone(_cli_backfill),
    ("backfill.cancel", "rest"): then(
        World.backfill, lambda w, b: w.ok(w.admin.post(f"/api/v1/backfills/{b}/cancel"))
    ),
    ("backfill.cancel", "cli"): then(
        World.backfill, lambda w, b: w.cli("backfills", "cancel", str(b))
    ),
    ("run.cancel", "rest"): then(
        World.run, lambda w, r: w.ok(w.admin.post(f"/api/v1/runs/{r}/cancel"))
    ),
    ("run.cancel", "cli"): then(World.run, lambda w, r: w.cli("runs", "cancel", str(r))),
    ("job.cancel", "rest"): then(World.job, lambda w, j: w.ok(w.admin.delete(f"/api/v1/jobs/{j}"))),
    ("job.cancel", "cli"): then(World.job, lambda w, j: w.cli("jobs", "cancel", str(j))),
    ("job.cancel", "console"): then(World.job, lambda w, j: w.form(f"/console/jobs/{j}/cancel")),
    ("job.cancel", "flower"): then(World.job, _revoke),
    ("dlq.replay", "rest"): then(
        World.dead_letter, lambda w, d: w.ok(w.admin.post(f"/api/v1/dlq/{d}/replay"))
    ),
    ("dlq.replay", "cli"): then(World.dead_letter, lambda w, d: w.cli("dlq", "replay", str(d))),
    ("dlq.replay", "console"): then(
        World.dead_letter, lambda w, d: w.form(f"/console/dlq/{d}/replay")
    ),
    ("dlq.discard", "rest"): then(
        World.dead_letter, lambda w, d: w.ok(w.admin.post(f"/api/v1/dlq/{d}/discard"))
    ),
    ("dlq.discard", "cli"): then(World.dead_letter, lambda w, d: w.cli("dlq", "discard", str(d))),
    ("dlq.discard", "console"): then(
        World.dead_letter, lambda w, d: w.form(f"/console/dlq/{d}/discard")
    ),
    ("dlq.purge", "rest"): then(
        _purge_ready, lambda w, _: w.ok(w.admin.delete("/api/v1/dlq?olderThanSeconds=0"))
    ),
    ("jobs.prune", "cli"): alone(lambda w: w.cli("db", "prune", "--older-than", "7d")),
    ("dlq.purge", "cli"): then(
        _purge_ready, lambda w, _: w.cli("dlq", "purge", "--older-than", "0s", "--yes")
    ),
}
"""Every (action, surface) pair the action list promises, and how each surface does it."""


def test_every_action_on_every_surface_it_offers_has_a_test_below() -> None:
    promised = {(a.name, surface) for a in ACTIONS for surface in a.surfaces}
    assert set(ACTS) == promised


def _entries_after(engine: Engine, after: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT * FROM audit_entries WHERE id > :a ORDER BY id"), {"a": after}
        ).mappings()
        return [dict(r) for r in rows]


def _last_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(text("SELECT coalesce(max(id), 0) FROM audit_entries")).scalar_one()
        )


@pytest.mark.parametrize(("action", "surface"), sorted(ACTS))
def test_each_act_leaves_exactly_one_entry_naming_its_actor_and_surface(
    one_world: World, action: str, surface: str
) -> None:
    world = one_world
    case = ACTS[(action, surface)]
    made = case.setup(world)
    before = _last_id(world.engine)
    done = case.act(world, made)
    object_id = made if made is not None else done
    [entry] = _entries_after(world.engine, before)
    expected_actor = {"cli": cli_actor(), "flower": FLOWER_ORIGIN.actor}.get(surface, world.actor)
    assert (entry["action"], entry["surface"], entry["actor"]) == (action, surface, expected_actor)
    assert entry["outcome"] == "done" and entry["reason"] is None
    if action in NO_ONE_OBJECT:
        assert entry["object_id"] is None
    else:
        assert entry["object_id"] == str(object_id)
    if surface in ("rest", "console", "flower"):
        assert entry["client_addr"] == "127.0.0.1"


def test_an_entry_names_every_job_the_act_touched_and_a_bulk_replay_is_one_entry(
    world: World,
) -> None:
    letters = [dead_letter(world.engine, tenant="acme") for _ in range(5)]
    before = _last_id(world.engine)
    replayed = world.ok(world.admin.post("/api/v1/dlq/replay", json={"type": ["noop"]}))
    assert len(replayed["replayed"]) == 5
    [entry] = _entries_after(world.engine, before)
    assert entry["action"] == "dlq.replay" and entry["detail"]["selected"] == 5
    listed = world.ok(world.admin.get("/api/v1/audit", params={"action": "dlq.replay"}))
    assert listed["items"][0]["jobIds"] == sorted(job for _, job in letters)
    for _, job in letters:
        found = world.ok(world.admin.get("/api/v1/audit", params={"jobId": job}))
        assert [e["id"] for e in found["items"]] == [entry["id"]]


def test_a_new_key_entry_holds_its_prefix_and_scopes_but_never_its_secret(world: World) -> None:
    before = _last_id(world.engine)
    prefix = _cli_key(world)
    [entry] = _entries_after(world.engine, before)
    assert entry["detail"] == {"name": "ci", "prefix": prefix, "scopes": ["jobs:read"]}
    with transaction(world.engine) as conn:
        secret_hash: str = conn.execute(
            text("SELECT secret_hash FROM api_keys WHERE prefix = :p"), {"p": prefix}
        ).scalar_one()
    assert secret_hash not in json.dumps(entry, default=str)


def test_a_schedule_edit_files_what_changed_before_and_after(world: World) -> None:
    schedule = world.schedule()
    before = _last_id(world.engine)
    world.ok(world.admin.patch(f"/api/v1/schedules/{schedule}", json={"jitterSeconds": 7}))
    [entry] = _entries_after(world.engine, before)
    assert entry["detail"] == {"changes": {"jitterSeconds": {"before": 0, "after": 7}}}


# ---- refusals ----


def test_an_act_without_the_scope_is_filed_as_refused_under_the_key(
    live: LiveServer, engine: Engine
) -> None:
    key = make_key(engine, "acme", "jobs:read", "jobs:write", name="app")
    with httpx.Client(base_url=live.url, headers=bearer(key), timeout=30) as http:
        assert http.put("/api/v1/limits/x", json=LIMIT).status_code == 403
    [entry] = _entries_after(engine, 0)
    assert (entry["action"], entry["outcome"], entry["reason"]) == (
        "limit.set",
        "refused",
        "FORBIDDEN",
    )
    assert entry["actor"].startswith("api:app (") and entry["tenant"] == "acme"
    assert entry["object_id"] == "x"


def test_another_tenants_job_is_refused_exactly_as_a_missing_one_and_the_entry_says_no_more(
    live: LiveServer, engine: Engine
) -> None:
    theirs = jobs_in(engine, "acme")[0].id
    missing = theirs + 1000
    key = make_key(engine, "globex", "jobs:read", "jobs:write", name="intruder")
    with httpx.Client(base_url=live.url, headers=bearer(key), timeout=30) as http:
        answers = [http.delete(f"/api/v1/jobs/{i}") for i in (theirs, missing)]
    assert [a.status_code for a in answers] == [404, 404]
    other, absent = _entries_after(engine, 0)
    for entry in (other, absent):
        assert (entry["outcome"], entry["reason"], entry["tenant"]) == (
            "refused",
            "JOB_NOT_FOUND",
            "globex",
        )
    assert other["detail"]["message"].replace(str(theirs), "N") == absent["detail"][
        "message"
    ].replace(str(missing), "N")
    assert answers[0].json()["message"] == other["detail"]["message"]
    assert "acme" not in json.dumps(other, default=str)
    with transaction(engine) as conn:
        touched: int = conn.execute(text("SELECT count(*) FROM audit_entry_jobs")).scalar_one()
    assert touched == 0  # a refusal names no job, so no export of acme's jobs shows it


def test_an_admin_acts_invalid_body_is_filed_as_refused_with_the_error_code(world: World) -> None:
    before = _last_id(world.engine)
    assert world.admin.put("/api/v1/quotas/acme", json={"maxRunning": 0}).status_code == 422
    [entry] = _entries_after(world.engine, before)
    assert (entry["action"], entry["outcome"]) == ("quota.set", "refused")
    assert entry["reason"] == "VALIDATION_ERROR"
    assert entry["detail"]["message"].startswith("maxRunning: ")


def test_a_console_form_without_the_scope_is_filed_as_refused(
    engine: Engine,
    world: World,
    login: Callable[[str], Session],  # noqa: F811
) -> None:
    key = make_key(engine, "acme", "jobs:read", name="viewer")
    job = jobs_in(engine, "acme")[0].id
    answer = login(key).post(f"/console/jobs/{job}/cancel", {"csrf": csrf_token(key)})
    assert answer.status_code == 403
    [entry] = _entries_after(engine, 0)
    assert (entry["action"], entry["surface"], entry["outcome"]) == (
        "job.cancel",
        "console",
        "refused",
    )


def test_requests_without_a_valid_key_are_not_filed(live: LiveServer, engine: Engine) -> None:
    with httpx.Client(base_url=live.url, timeout=30) as http:
        assert http.put("/api/v1/limits/x", json=LIMIT).status_code == 401
        wrong = {"Authorization": "Bearer je_nope_nope"}
        assert http.delete("/api/v1/jobs/1", headers=wrong).status_code == 401
    assert _entries_after(engine, 0) == []


# ---- reading ----


def _filed_for_two_tenants(world: World) -> None:
    world.ok(world.admin.put("/api/v1/quotas/acme", json={"maxQueued": 5}))
    world.ok(world.admin.put("/api/v1/quotas/globex", json={"maxQueued": 5}))
    world.ok(world.admin.put("/api/v1/limits/noop-10s", json=LIMIT))


def test_a_tenant_key_reads_only_its_tenants_entries_without_addresses(
    world: World, live: LiveServer
) -> None:
    _filed_for_two_tenants(world)
    key = make_key(world.engine, "acme", "audit:read", name="auditor")
    with httpx.Client(base_url=live.url, headers=bearer(key), timeout=30) as http:
        mine = world.ok(http.get("/api/v1/audit"))
        other = http.get("/api/v1/audit", headers={"X-Tenant-Id": "globex"})
    assert [(e["action"], e["tenantId"]) for e in mine["items"]] == [("quota.set", "acme")]
    assert mine["items"][0]["clientAddr"] is None
    assert other.status_code == 403
    everything = world.ok(world.reader.get("/api/v1/audit"))
    assert len(everything["items"]) >= 3


def test_reading_the_log_needs_the_audit_scope(live: LiveServer, engine: Engine) -> None:
    key = make_key(engine, "acme", "jobs:read", name="reader")
    with httpx.Client(base_url=live.url, headers=bearer(key), timeout=30) as http:
        refused = http.get("/api/v1/audit")
    assert refused.status_code == 403 and "audit:read" in refused.json()["message"]


def test_the_filters_narrow_and_the_cursor_pages_back_in_time(world: World) -> None:
    for n in range(5):
        world.ok(world.admin.put(f"/api/v1/fair-queues/q{n}", json={"maxInFlight": 2}))
    world.ok(world.admin.put("/api/v1/quotas/acme", json={"maxQueued": 5}))
    http = world.reader

    def ids(**params: Any) -> list[str]:
        got = world.ok(http.get("/api/v1/audit", params=params))
        return [e["objectId"] for e in got["items"]]

    assert ids(action="fair_queue.set") == ["q4", "q3", "q2", "q1", "q0"]
    assert ids(objectKind="queue", objectId="q2") == ["q2"]
    assert ids(actor=world.actor, action="quota.set") == ["acme"]
    assert ids(outcome="refused") == []
    assert ids(until="2000-01-01T00:00:00Z") == []
    assert len(ids(since="2000-01-01T00:00:00Z")) == 6
    first = world.ok(http.get("/api/v1/audit", params={"limit": 4}))
    rest = world.ok(http.get("/api/v1/audit", params={"limit": 4, "cursor": first["nextCursor"]}))
    pages = [e["id"] for e in first["items"] + rest["items"]]
    assert pages == sorted(pages, reverse=True) and len(pages) == 6 and rest["nextCursor"] is None
    unknown = http.get("/api/v1/audit", params={"action": "key.steal"})
    assert unknown.status_code == 422 and unknown.json()["code"] == "UNKNOWN_AUDIT_ACTION"


def test_the_cli_lists_the_same_fields_as_rest_and_a_table_otherwise(world: World) -> None:
    world.ok(world.admin.put("/api/v1/quotas/acme", json={"maxQueued": 5}))
    rest = world.ok(world.reader.get("/api/v1/audit"))
    cli = json.loads(world.cli("audit", "list", "--json"))
    assert cli == rest
    table = world.cli("audit", "list", "--action", "quota.set")
    assert "quota.set" in table and "acme" in table
