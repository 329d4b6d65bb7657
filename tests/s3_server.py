"""An S3-compatible server for tests: moto's, in a thread, on 127.0.0.1 and a free port only,
with one empty bucket; the artifacts URL that names it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import pytest
from moto.server import ThreadedMotoServer

from jobengine.embedded import free_loopback_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""moto takes any credentials; boto3 refuses to sign without some."""


@contextmanager
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Yields ``s3://<bucket>/engine?endpoint_url=…&region=…``; the server stops after. The
    bucket's name is new each time: moto keeps its buckets in the process, across servers."""
    bucket = f"artifacts-{uuid.uuid4().hex[:12]}"
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    port = free_loopback_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        yield f"s3://{bucket}/engine?endpoint_url={endpoint}&region=us-east-1"
    finally:
        server.stop()
