"""Claim admission on a fake clock (slows down when claims are slow or refused, recovers), the
driver errors that say "overloaded", and the host's connection budget."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeout

from config.settings import Settings
from jobengine.admission import Admission, AdmissionPolicy
from jobengine.errors import StoreOverloaded
from jobengine.store.database import store_error_for
from jobengine.store.host_budget import HostBudgetExceeded, host_share
from jobengine.store.startup import EXIT_CONFIG, check_host_budget
from workers.runtime import admission_of


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def admission(**policy: float) -> tuple[Admission, FakeClock]:
    clock = FakeClock()
    return Admission(AdmissionPolicy(**policy), clock=clock, sleep=clock.sleep), clock


def test_healthy_claims_are_never_delayed() -> None:
    gate, clock = admission()
    for _ in range(1000):
        assert gate.admit() == 0.0
        gate.observe(0.002)
        clock.now += 0.001
    assert gate.rate is None and clock.slept == []


def test_slow_claims_in_a_row_halve_the_rate_seen_in_the_last_second() -> None:
    gate, clock = admission(slow_claim_seconds=0.1)
    for _ in range(40):  # 40 claims within the last second
        gate.admit()
        clock.now += 0.02
    gate.observe(0.5)
    assert gate.rate is None, "one slow claim alone may be this process waiting for a CPU"
    gate.observe(0.5)
    assert gate.rate == 20.0
    gate.admit()
    waited = gate.admit()
    assert waited == pytest.approx(1 / 20.0)


def test_a_burst_of_failures_counts_once_per_interval_and_stops_at_the_floor() -> None:
    gate, clock = admission(floor_per_second=0.5, decrease_interval_seconds=0.5)
    for _ in range(10):
        gate.admit()
    for _ in range(5):
        gate.congested("STORE_UNAVAILABLE")
    assert gate.rate == 5.0, "five failures at one instant halve once"
    for _ in range(20):
        clock.now += 0.6
        gate.congested("STORE_UNAVAILABLE")
    assert gate.rate == 0.5


def test_healthy_claims_after_saturation_open_the_gate_again() -> None:
    gate, clock = admission(floor_per_second=0.5, ceiling_per_second=50.0, increase_per_claim=2.0)
    gate.congested("OVERLOADED")
    assert gate.rate == 0.5
    claims = 0
    while gate.rate is not None:
        gate.admit()
        gate.observe(0.002)
        claims += 1
    assert claims == 25
    assert sum(clock.slept) < 5.0, "recovery takes seconds, not minutes"


def test_a_pool_checkout_timeout_and_a_full_server_say_overloaded_and_retryable() -> None:
    mapped = store_error_for(PoolTimeout("QueuePool limit of size 1 overflow 0 reached"))
    assert isinstance(mapped, StoreOverloaded)
    assert (mapped.code, mapped.retryable, mapped.retry_after_seconds) == ("OVERLOADED", True, 1)


@pytest.mark.parametrize(("processes", "api_each"), [(2, 15), (4, 13), (8, 9)])
def test_the_host_budget_gives_the_api_what_the_workers_and_reaper_leave(
    processes: int, api_each: int
) -> None:
    """The RUNBOOK's table: one worker node of -c 2/4/8, one reaper, a budget of 20."""
    settings = Settings(
        db_connections_per_host=20,
        host_workers=1,
        fleet_worker_concurrency=processes,
        host_reapers=1,
        host_api_processes=1,
    )
    share = host_share(settings)
    assert share.fixed == 1 + processes + 2
    assert share.api_each == api_each
    assert share.api_pool_size + share.api_max_overflow == share.api_each


def test_a_host_budget_too_small_for_its_workers_names_the_numbers_and_the_fix() -> None:
    settings = Settings(
        db_connections_per_host=10, host_workers=2, fleet_worker_concurrency=4, host_reapers=1
    )
    with pytest.raises(HostBudgetExceeded) as refused:
        host_share(settings)
    says = str(refused.value)
    assert "JOBENGINE_DB_CONNECTIONS_PER_HOST=10" in says
    assert "JOBENGINE_HOST_WORKERS=2" in says and "= 12" in says
    assert "raise the budget" in says


def test_without_a_host_budget_the_api_keeps_its_pool_of_ten_and_twenty() -> None:
    share = host_share(Settings())
    assert (share.api_pool_size, share.api_max_overflow, share.budget) == (10, 20, None)


def test_a_role_whose_host_exceeds_its_budget_exits_with_ex_config_at_start() -> None:
    settings = Settings(db_connections_per_host=5, fleet_worker_concurrency=8)
    with pytest.raises(SystemExit) as ended:
        check_host_budget(settings, "worker")
    assert ended.value.code == EXIT_CONFIG


def test_claim_admission_follows_its_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBENGINE_CLAIM_ADMISSION", "false")
    monkeypatch.setenv("JOBENGINE_CLAIM_ADMISSION_SLOW_SECONDS", "0.5")
    policy = admission_of(Settings()).policy
    assert policy == AdmissionPolicy(enabled=False, slow_claim_seconds=0.5)


def test_a_switched_off_admission_ignores_congestion() -> None:
    clock = FakeClock()
    gate = Admission(AdmissionPolicy(enabled=False), clock=clock, sleep=clock.sleep)
    for _ in range(10):
        gate.congested("53300")
        gate.observe(5.0)
        assert gate.admit() == 0.0
    assert gate.rate is None and clock.slept == []
