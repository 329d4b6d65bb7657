"""The README's "Adding your own job types", run as a user would: the handler module is a file
only the worker can import; the API server and the producer run where it does not exist."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jobengine.api.keys import JOBS_READ, JOBS_WRITE
from tests.api.conftest import make_key
from tests.client.readme import examples
from tests.fleet.catalogue_support import start_api
from tests.fleet.conftest import REPO, Fleet

pytestmark = pytest.mark.slow

SECTION = "Adding your own job types"


def test_readme_example_of_a_custom_job_type_runs_end_to_end(fleet: Fleet) -> None:
    handler_module, producer = examples(SECTION)
    app_dir = fleet.logs / "userland"
    (app_dir / "myapp").mkdir(parents=True)
    (app_dir / "myapp" / "__init__.py").write_text("")
    (app_dir / "myapp" / "jobs.py").write_text(handler_module)
    modules = json.dumps(["myapp.jobs"])

    fleet.start_worker("w1", JOBENGINE_HANDLER_MODULES=modules, PYTHONPATH=f"{REPO}:{app_dir}")
    key = make_key(fleet.engine, "shop", JOBS_READ, JOBS_WRITE, name="readme")
    api = start_api(fleet, "api", key, JOBENGINE_HANDLER_MODULES=modules)

    script = (
        f"API_URL = {api.url!r}\nAPI_KEY = {key!r}\n{producer}\n"
        "import sys\nassert 'myapp' not in sys.modules\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=app_dir.parent,
        env=fleet.env(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()
    assert "order_id: 0 is less than the minimum of 1" in run.stdout.decode()

    listed = subprocess.run(
        [sys.executable, "-c", "from jobengine.cli import main; main()", "types", "list", "--json"],
        cwd=REPO,
        env=fleet.env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr.decode()
    [invoice] = [t for t in json.loads(listed.stdout)["items"] if t["name"] == "send_invoice"]
    assert invoice["payloadSchema"]["required"] == ["order_id", "email"]
    assert invoice["retryPolicy"]["maxRetries"] == 5
    assert invoice["declaredBy"].startswith("worker@")
    assert not Path(REPO / "myapp").exists()
