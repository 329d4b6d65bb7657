"""The fleet fixtures (real Redis, worker and reaper processes) for the client's tests."""

from tests.fleet.conftest import broker_url, fleet, redis_server

__all__ = ["broker_url", "fleet", "redis_server"]
