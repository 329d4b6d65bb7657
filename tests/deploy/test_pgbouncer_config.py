"""``deploy/pgbouncer/`` and the Compose override that puts it in front of Postgres, checked
offline: the override follows the Compose specification, every role that reaches Postgres goes
through PgBouncer with the pooler setting on, and the reapers' pool carries the bounds the
reaper would send itself (tests/pgbouncer run the same file on a real PgBouncer)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from config.settings import Settings
from tests.deploy.test_manifests import COMPOSE, DEPLOY, compose_check
from tests.pgbouncer.bouncer import ENGINE_DB, REAPER_DB, bounds_query, deploy_config

OVERRIDE = DEPLOY / "compose" / "compose.pgbouncer.yaml"
POOLED_ROLES = {"migrate", "api", "worker", "reaper"}
"""Every service of compose.yaml that reaches Postgres (Flower reads only the broker)."""


def services(path: Any) -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = yaml.safe_load(path.read_text())["services"]
    return loaded


def merged_environment(service: str) -> dict[str, str]:
    """The service's environment as Compose merges an override: key by key."""
    base = services(COMPOSE)[service].get("environment", {})
    return {**base, **services(OVERRIDE).get(service, {}).get("environment", {})}


def test_the_pgbouncer_override_follows_the_compose_specification() -> None:
    checked = compose_check(OVERRIDE)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_with_the_override_every_role_reaches_postgres_through_pgbouncer_in_transaction_mode() -> (
    None
):
    reaching = {
        name
        for name, service in services(COMPOSE).items()
        if "@postgres:" in str(service.get("environment", {}).get("JOBENGINE_DATABASE_URL"))
    }
    assert reaching - {"flower"} == POOLED_ROLES
    for role in POOLED_ROLES:
        env = merged_environment(role)
        assert env["JOBENGINE_DB_POOLER"] == "transaction", role
        database = REAPER_DB if role == "reaper" else ENGINE_DB
        assert env["JOBENGINE_DATABASE_URL"].endswith(f"@pgbouncer:6432/{database}"), role
    assert merged_environment("worker")["JOBENGINE_SHUTDOWN_GRACE_SECONDS"] == "300"


def test_the_reapers_pool_sets_the_bounds_of_the_default_leader_ttl_on_the_engines_database() -> (
    None
):
    config = deploy_config()
    assert config["pgbouncer"]["pool_mode"] == "transaction"
    engine, reaper = config["databases"][ENGINE_DB], config["databases"][REAPER_DB]
    assert reaper.startswith(engine + " ")
    [query] = re.findall(r"connect_query='([^']*)'", reaper)
    assert query == bounds_query(Settings.model_fields["leader_ttl_seconds"].default)
