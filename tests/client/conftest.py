"""The fleet fixtures (real Redis, worker and reaper processes) and a real API server over them."""

from collections.abc import Iterator

import pytest

from tests.client.server import ApiServer, serve
from tests.fleet.conftest import Fleet, broker_url, fleet, redis_server

__all__ = ["api", "broker_url", "fleet", "redis_server"]


@pytest.fixture
def api(fleet: Fleet) -> Iterator[ApiServer]:
    with serve(fleet) as server:
        yield server
