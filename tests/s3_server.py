"""An S3-compatible server on loopback for the tests and benchmarks: moto in server mode
(``python -m moto.server``), a real HTTP server in a process of its own, on a free port.

:func:`moto_server` starts one (a context manager yielding its URL); the fixtures
``s3_endpoint`` (one server per test session) and ``s3_env`` (a fresh bucket per test, with
the ``AWS_*`` and ``ASSAY_S3_ENDPOINT_URL`` variables set for it) bring it into tests:
``from tests.s3_server import s3_endpoint, s3_env``.

moto checks neither request signatures nor ``Content-MD5`` (real S3 does both): tests that
rely on them say so and check what the platform itself checks.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

__all__ = ["S3Env", "moto_server", "s3_endpoint", "s3_env"]

#: Credentials moto accepts (any would do); set for every test that uses ``s3_env``.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "assay-test",
    "AWS_SECRET_ACCESS_KEY": "assay-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def moto_server(*, timeout: float = 30.0) -> Iterator[str]:
    """Run ``python -m moto.server`` on a free loopback port; yields ``http://127.0.0.1:P``.
    The server is stopped (and waited for) on exit."""
    pytest.importorskip(
        "moto.server", reason="moto[server] is not installed (pip install -e .[dev])"
    )
    last = "did not start"
    for _ in range(3):  # another process may take the free port first: try another
        port = _free_port()
        # its request log goes to a file: a pipe nobody reads fills up, and the server stops
        with tempfile.TemporaryFile() as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            deadline = time.monotonic() + timeout
            while process.poll() is None and time.monotonic() < deadline:
                if _answers(port):
                    try:
                        yield f"http://127.0.0.1:{port}"
                    finally:
                        process.terminate()
                        try:
                            process.wait(10)
                        except subprocess.TimeoutExpired:
                            process.kill()
                            process.wait()
                    return
                time.sleep(0.05)
            process.kill()
            process.wait()
            log.seek(0)
            last = log.read().decode(errors="replace")[-500:]
    raise RuntimeError(f"moto.server did not start on loopback: {last}")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of one moto server for the whole test session."""
    with moto_server() as url:
        yield url


@dataclass(frozen=True)
class S3Env:
    """A fresh bucket on the test server, with the environment set to reach it."""

    endpoint: str
    """The server's URL (also in ``ASSAY_S3_ENDPOINT_URL``)."""
    bucket: str
    """The bucket's name."""

    def url(self, prefix: str = "assay") -> str:
        """``s3://<bucket>/<prefix>``."""
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"

    def keys(self, prefix: str) -> list[str]:
        """The keys in the bucket that start with ``prefix``, sorted."""
        client: Any = self.client()
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents") or ())

    def client(self) -> object:
        """A boto3 S3 client of the server (to look at the bucket from outside)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )


def make_bucket(endpoint: str, name: str | None = None) -> str:
    """Create a bucket on the server at ``endpoint``; returns its name."""
    name = name or f"assay-{uuid.uuid4().hex[:12]}"
    S3Env(endpoint, name).client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
    return name


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Env:
    """A new bucket, and ``AWS_*`` and ``ASSAY_S3_ENDPOINT_URL`` set for this test."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ASSAY_S3_ENDPOINT_URL", s3_endpoint)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    return S3Env(s3_endpoint, make_bucket(s3_endpoint))


def environment(endpoint: str) -> dict[str, str]:
    """The variables a process needs to reach the server at ``endpoint``."""
    return {**os.environ, **CREDENTIALS, "ASSAY_S3_ENDPOINT_URL": endpoint}
