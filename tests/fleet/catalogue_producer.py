"""A producer in another service: ``python -m tests.fleet.catalogue_producer``.

It knows the job type ``catalogue_report`` by name only, submits it through REST, the client
and ``enqueue`` (its own transaction), tries a payload of each that breaks the type's schema,
and prints one JSON document: the job ids, each refusal, and whether the handler module was
ever imported here. Settings come from the environment (``PRODUCER_*``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import httpx
from sqlalchemy.orm import Session

from jobengine.client import ApiError, JobEngineClient
from jobengine.enqueue import enqueue
from jobengine.errors import PayloadInvalid
from jobengine.store.database import make_engine

TYPE = "catalogue_report"


def main() -> dict[str, Any]:
    url, key, tenant = (os.environ[f"PRODUCER_{n}"] for n in ("API_URL", "API_KEY", "TENANT"))
    ids: list[int] = []
    refusals: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {key}", "X-Tenant-Id": tenant}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        created = http.post(
            "/api/v1/jobs", json={"type": TYPE, "projectId": "p", "payload": {"rows": 1}}
        )
        created.raise_for_status()
        ids.append(created.json()["id"])
        bad = http.post(
            "/api/v1/jobs", json={"type": TYPE, "projectId": "p", "payload": {"rows": -1}}
        )
        refusals["rest"] = {"status": bad.status_code, **bad.json()}
        refusals["schema"] = http.get(f"/api/v1/job-types/{TYPE}").json()["payloadSchema"]

    client = JobEngineClient(url, api_key=key, tenant_id=tenant)
    try:
        ids.append(client.create(TYPE, {"rows": 2}, project_id="p").id)
        try:
            client.create(TYPE, {"rows": "many"}, project_id="p")
        except ApiError as exc:
            refusals["client"] = {"status": exc.status, "code": exc.code, "message": str(exc)}
    finally:
        client.close()

    engine = make_engine(os.environ["JOBENGINE_DATABASE_URL"], pool_size=1)
    try:
        with Session(engine) as session:
            ids.append(enqueue(session, TYPE, {"rows": 3}, tenant_id=tenant, project_id="p").id)
            try:
                enqueue(session, TYPE, {}, tenant_id=tenant, project_id="p")
            except PayloadInvalid as exc:
                refusals["enqueue"] = {"code": exc.code, "message": exc.message}
            session.commit()
    finally:
        engine.dispose()
    return {
        "ids": ids,
        "refusals": refusals,
        "handler_imported": any(m.startswith("tests.fleet.catalogue_handlers") for m in sys.modules)
        or "tests.fleet.handlers" in sys.modules,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
