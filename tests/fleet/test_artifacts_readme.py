"""The README's "Results and artifacts", run as a user would: the handler module is a file
only the worker imports; the API server and the producer are processes that never did, and
the artifact goes through the storage the URL names."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from jobengine.api.keys import JOBS_READ, JOBS_WRITE
from tests.api.conftest import make_key
from tests.client.readme import examples
from tests.fleet.catalogue_support import start_api
from tests.fleet.conftest import REPO, Fleet

pytestmark = pytest.mark.slow

SECTION = "Results and artifacts"


def test_readme_example_of_results_and_artifacts_runs_end_to_end(fleet: Fleet) -> None:
    handler_module, producer = examples(SECTION)
    app_dir = fleet.logs / "userland"
    (app_dir / "myapp").mkdir(parents=True)
    (app_dir / "myapp" / "__init__.py").write_text("")
    (app_dir / "myapp" / "reports.py").write_text(handler_module)
    modules = json.dumps(["myapp.reports"])
    storage = {"JOBENGINE_ARTIFACTS_URL": (fleet.logs / "artifacts").as_uri()}

    fleet.start_worker(
        "w1", JOBENGINE_HANDLER_MODULES=modules, PYTHONPATH=f"{REPO}:{app_dir}", **storage
    )
    key = make_key(fleet.engine, "shop", JOBS_READ, JOBS_WRITE, name="readme")
    api = start_api(fleet, "api", key, JOBENGINE_HANDLER_MODULES=modules, **storage)

    script = (
        f"API_URL = {api.url!r}\nAPI_KEY = {key!r}\n{producer}\n"
        "import sys\nassert 'myapp' not in sys.modules\n"
    )
    workdir = fleet.logs / "producer"
    workdir.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=workdir,
        env=fleet.env(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()
    assert run.stdout.decode() == "day,orders\n2026-11-01,17\n2026-11-02,23\n\n"
    assert sorted(p.name for p in workdir.iterdir()) == ["orders.csv"]
