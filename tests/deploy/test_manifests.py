"""``deploy/``'s Compose file and Kubernetes manifests, checked offline against their
specifications' schemas, and against what the engine needs of a deployment: probes that ask
the right thing, grace periods that let running jobs finish, budgets that keep a quorum."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from config.settings import Settings
from workers.shutdown import STOP_WAIT_SECONDS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")
JOBENGINE = Path(sys.executable).with_name("jobengine")
KUBERNETES = "1.37"
LONGEST_JOB_SECONDS = 300
"""The longest time limit the manifests are written for (deploy/README.md says to raise it)."""


def k8s_resources() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_resources() if d["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(only, dict)
    return only


def compose_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    checked = compose_check(COMPOSE)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["worker"]["restarts"] = "always"  # a misspelt key
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    refused = compose_check(tmp_path / "compose.yaml")
    assert refused.returncode == 1 and "restarts" in refused.stdout + refused.stderr


def test_compose_runs_every_role_with_its_health_check_and_the_migration_first() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "reaper", "flower"}
    for role in ("api", "worker", "reaper", "flower"):
        assert services[role]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "jobengine", "health", "worker"]
    assert services["reaper"]["deploy"]["replicas"] == 2
    assert int(services["worker"]["stop_grace_period"].rstrip("s")) > LONGEST_JOB_SECONDS
    assert "--basic-auth" in " ".join(services["flower"]["command"])


@pytest.mark.parametrize(
    "resource",
    k8s_resources(),
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_every_kubernetes_resource_follows_its_schema(resource: dict[str, Any]) -> None:
    kubernetes_validate.validate(resource, KUBERNETES, strict=True)


def test_a_resource_that_breaks_its_schema_is_refused() -> None:
    worker = by_kind("Deployment")["jobengine-worker"]
    broken = {**worker, "spec": {**worker["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk


def test_probes_never_restart_a_role_for_an_outage_of_postgres_or_redis() -> None:
    deployments = by_kind("Deployment")
    api = container(deployments["jobengine-api"])
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    worker = container(deployments["jobengine-worker"])
    assert worker["livenessProbe"]["exec"]["command"] == ["jobengine", "health", "worker"]
    config = by_kind("ConfigMap")["jobengine-config"]["data"]
    assert config["JOBENGINE_WORKER_ALIVE_FILE"]


def test_workers_get_longer_than_the_longest_job_to_drain_and_leave_one_at_a_time() -> None:
    worker = by_kind("Deployment")["jobengine-worker"]
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > LONGEST_JOB_SECONDS
    hpa = by_kind("HorizontalPodAutoscaler")["jobengine-worker"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "jobengine-worker"
    assert hpa["spec"]["behavior"]["scaleDown"]["policies"] == [
        {"type": "Pods", "value": 1, "periodSeconds": 120}
    ]
    [metric] = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] == "jobengine_queue_depth"


# ---- graceful shutdown: the orchestrator waits for the bound, and then some ----------------

SHUTDOWN_MARGIN_SECONDS = 30
"""What a worker may need past its shutdown bound before it is killed: stopping handlers,
hand-backs, the flush of outcomes, its goodbye to the registry."""


def test_workers_are_given_their_shutdown_bound_plus_a_margin_before_they_are_killed() -> None:
    worker = by_kind("Deployment")["jobengine-worker"]
    env = {e["name"]: e["value"] for e in container(worker)["env"]}
    k8s_bound = float(env["JOBENGINE_SHUTDOWN_GRACE_SECONDS"])
    assert k8s_bound >= LONGEST_JOB_SECONDS  # a job within its time limit is never cut off
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= k8s_bound + SHUTDOWN_MARGIN_SECONDS

    compose = yaml.safe_load(COMPOSE.read_text())["services"]["worker"]
    compose_bound = float(compose["environment"]["JOBENGINE_SHUTDOWN_GRACE_SECONDS"])
    stop_grace = int(compose["stop_grace_period"].rstrip("s"))
    assert stop_grace >= compose_bound + SHUTDOWN_MARGIN_SECONDS

    unit = (DEPLOY / "systemd" / "jobengine-worker@.service").read_text().splitlines()
    env_file = (DEPLOY / "jobengine.env.example").read_text().splitlines()
    [unit_bound] = [line.split("=", 1)[1] for line in env_file if "SHUTDOWN_GRACE" in line]
    [timeout] = [line.split("=", 1)[1] for line in unit if line.startswith("TimeoutStopSec=")]
    assert float(timeout) >= float(unit_bound) + SHUTDOWN_MARGIN_SECONDS
    assert "KillMode=mixed" in unit  # SIGTERM to the main process only


def test_the_default_shutdown_bound_fits_in_the_default_kubernetes_grace_period() -> None:
    kubernetes_default_grace = 30
    bound = Settings.model_fields["shutdown_grace_seconds"].default
    assert bound + STOP_WAIT_SECONDS < kubernetes_default_grace


def test_every_long_running_role_has_a_disruption_budget_and_two_reapers_run() -> None:
    budgets = by_kind("PodDisruptionBudget")
    assert set(budgets) == {"jobengine-api", "jobengine-worker", "jobengine-reaper"}
    deployments = by_kind("Deployment")
    for name, budget in budgets.items():
        selector = budget["spec"]["selector"]["matchLabels"]
        assert selector == deployments[name]["spec"]["selector"]["matchLabels"]
    assert deployments["jobengine-reaper"]["spec"]["replicas"] == 2


def test_every_role_reads_the_config_and_secret_that_exist() -> None:
    names = {("configMapRef", n) for n in by_kind("ConfigMap")} | {
        ("secretRef", n) for n in by_kind("Secret")
    }
    pods = [d["spec"]["template"]["spec"] for d in by_kind("Deployment").values()]
    pods += [j["spec"]["template"]["spec"] for j in by_kind("Job").values()]
    for pod in pods:
        for c in pod["containers"]:
            refs = {(kind, ref["name"]) for e in c["envFrom"] for kind, ref in e.items()}
            assert refs == names, c["name"]


@pytest.mark.parametrize(
    "command",
    [["db", "upgrade"], ["api"], ["reaper"], ["health", "worker"]],
    ids=" ".join,
)
def test_the_commands_the_manifests_run_exist(command: list[str]) -> None:
    shown = subprocess.run(
        [str(JOBENGINE), *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
