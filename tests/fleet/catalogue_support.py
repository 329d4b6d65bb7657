"""Helpers for the catalogue's fleet tests: workers with the catalogue's handler module, and
an API server in its own process (``python -m jobengine.api``), as a producer service sees it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from jobengine.embedded import free_loopback_port
from tests.api.conftest import bearer
from tests.fleet.conftest import Fleet, wait_until

HANDLERS = json.dumps(["tests.fleet.catalogue_handlers"])
TENANT = "shop"


class Api:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, key: str) -> None:
        self.proc, self.url, self.key = proc, url, key

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, headers=bearer(self.key), timeout=10)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        headers = {**bearer(self.key), "X-Tenant-Id": TENANT}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=10)


def imports_log(fleet: Fleet) -> Path:
    return fleet.logs / "handler-imports.txt"


def importers(fleet: Fleet) -> set[int]:
    path = imports_log(fleet)
    return {int(line) for line in path.read_text().split()} if path.exists() else set()


def handler_env(fleet: Fleet, variant: str = "v1") -> dict[str, str]:
    """Every process gets the handler module configured: only workers may import it."""
    return {
        "JOBENGINE_HANDLER_MODULES": HANDLERS,
        "CATALOGUE_VARIANT": variant,
        "CATALOGUE_IMPORTS": str(imports_log(fleet)),
    }


def start_worker(fleet: Fleet, name: str, variant: str = "v1") -> subprocess.Popen[bytes]:
    return fleet.start_worker(name, **handler_env(fleet, variant))


def start_api(fleet: Fleet, name: str, key: str, **env_overrides: str) -> Api:
    port = free_loopback_port()
    env = fleet.env(JOBENGINE_API_PORT=str(port), **{**handler_env(fleet), **env_overrides})
    proc = fleet.spawn(name, [sys.executable, "-m", "jobengine.api"], env)
    api = Api(proc, f"http://127.0.0.1:{port}", key)

    def ready() -> bool:
        assert proc.poll() is None, fleet.log_of(name)
        try:
            return api.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, 60, f"API {name} serving")
    return api
