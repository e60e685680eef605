"""The platform on S3 storage, against a real S3-compatible server on loopback (moto):

- an embedded ``LocalPlatform(storage="s3://...")`` runs a whole audit (Module, Dataset,
  Evaluation, Measurement, notebook SafetyCase) with every artifact in the bucket, and
  ``verify`` re-hashes the chain from the bucket's bytes;
- a server with ``storage=s3://...``: the Client uploads a data set and downloads artifacts
  through S3 presigned URLs (the bytes never pass through the server), with the same access
  checks and the same md5 check at finalize;
- a bad setting stops ``assay serve``, the server settings and ``LocalPlatform`` with one
  clear error.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from tests.analysis.test_safetycases import Audit
from tests.conftest import ACCOUNT
from tests.s3_server import S3Env, s3_endpoint, s3_env

from assay import errors
from assay.cli import main
from assay.client import Client
from assay.local import LocalPlatform
from assay.schema.status import Status
from assay.server import ServerSettings, create_app, issue_token
from assay.storage import S3Storage

__all__ = ["s3_endpoint", "s3_env"]  # the fixtures, brought into scope

ALICE, BOB = "alice", "bob"


# -- the embedded platform ---------------------------------------------------------------------


@pytest.fixture
def platform(s3_env: S3Env, tmp_path: Path) -> Iterator[LocalPlatform]:
    with LocalPlatform(
        storage_root=tmp_path / "platform", account=ACCOUNT, storage=s3_env.url("audits")
    ) as p:
        yield p


def test_a_whole_audit_keeps_its_artifacts_in_the_bucket_and_verifies(
    platform: LocalPlatform, s3_env: S3Env, tmp_path: Path
) -> None:
    assert isinstance(platform.core.storage, S3Storage)
    audit = Audit(platform, tmp_path)
    method = audit.notebook_method("ok.ipynb")
    evaluation, measurement = audit.evaluate(seed=1)
    case = audit.safety_case(method, evaluation, measurement)
    assert case.status == Status.Complete, case.message
    assert case.message == "1 score(s), 1 curve(s)"
    (score,) = platform.safetycases.scores(case.id)
    lengths = platform.measurements.open(measurement).to_table()["length"].to_pylist()
    assert score.quantity == pytest.approx(sum(lengths) / len(lengths))

    # every artifact is in the bucket, none in the platform's folder
    for id, expected in (
        (audit.dataset, "part-0.parquet"),
        (audit.module, "lengthaudit/__init__.py"),
        (evaluation, "data/part-"),
        (measurement, "data.parquet"),
        (case.id, "index.html"),
    ):
        keys = s3_env.keys(f"audits/{id}/")
        assert any(k.startswith(f"audits/{id}/{expected}") for k in keys), (id, keys)
        assert not (platform.storage_root / id).exists()
    html = platform.safetycases.document(case.id)
    assert "Response length audit" in html
    assert platform.safetycases.document_path(case.id).read_text(encoding="utf-8") == html

    # provenance re-hashes the chain from the bucket's bytes
    result = platform.verify(case.id)
    assert result.ok, str(result)
    part = next(k for k in s3_env.keys(f"audits/{evaluation}/data/"))
    client: Any = s3_env.client()
    original = client.get_object(Bucket=s3_env.bucket, Key=part)["Body"].read()
    client.put_object(Bucket=s3_env.bucket, Key=part, Body=original[:-1] + b"\0")
    result = platform.verify(case.id)
    assert not result.ok
    assert any(
        m.id == evaluation and m.artifact == part.split("/", 2)[2] for m in result.mismatches
    ), str(result)


def test_a_bad_storage_setting_stops_the_platform_at_once(
    s3_env: S3Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(errors.ValidationError, match=r"the bucket 'not-made-yet' does not exist"):
        LocalPlatform(storage_root=tmp_path / "p", storage="s3://not-made-yet/x")
    with pytest.raises(
        errors.ValidationError, match=r"storage 'S3://x': storage of scheme 'S3' is not supported"
    ):
        LocalPlatform(storage_root=tmp_path / "p", storage="S3://x")
    with pytest.raises(errors.ValidationError) as caught:
        ServerSettings.from_env({"ASSAY_STORAGE": "s3://Bad_Bucket"})
    assert str(caught.value).startswith("server setting ASSAY_STORAGE: storage 's3://Bad_Bucket'")
    assert "expected s3://BUCKET or s3://BUCKET/PREFIX" in str(caught.value)
    monkeypatch.setenv("ASSAY_STORAGE", "s3://not-made-yet")
    code = main(["serve", "--single-user", "--data", str(tmp_path / "served")])
    assert code == 2
    monkeypatch.delenv("ASSAY_STORAGE")
    code = main(
        ["serve", "--single-user", "--data", str(tmp_path / "s"), "--storage", "s3://not-made"]
    )
    assert code == 2


def test_assay_serve_says_what_is_wrong_in_one_line(
    s3_env: S3Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--single-user", "--data", str(tmp_path), "--storage", "s3://nope-x"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err
    assert err.startswith("assay: error: --storage (ASSAY_STORAGE) 's3://nope-x': the bucket")
    assert "aws s3 mb s3://nope-x" in err


# -- a server on S3 storage, and the Client ----------------------------------------------------


@dataclass
class Served:
    url: str
    core: Any
    clients: list[Client]

    def client(self, account: str, cache: Path) -> Client:
        """A Client for ``account`` (closed when the test ends)."""
        token = issue_token(self.core, account=account)
        client = Client(self.url, token, progress=False, cache_dir=cache)
        self.clients.append(client)
        return client

    def api(self, account: str) -> httpx.Client:
        token = issue_token(self.core, account=account)
        return httpx.Client(
            base_url=f"{self.url}/v0", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )


@pytest.fixture
def served(s3_env: S3Env, tmp_path: Path) -> Iterator[Served]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = ServerSettings(
        data_dir=tmp_path / "server",
        port=port,
        storage=s3_env.url("srv"),
        executor="threads",
        shutdown_timeout=20,
        log_level="warning",
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "the server thread ended before it started"
        assert time.monotonic() < deadline, "the server did not start within 60 s"
        time.sleep(0.02)
    try:
        served = Served(f"http://127.0.0.1:{port}", app.state.assay.core, [])
        yield served
        for client in served.clients:
            client.close()
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


def write_parts(directory: Path) -> Path:
    import pyarrow as pa

    directory.mkdir(parents=True)
    table = pa.table(
        {"_index_": pa.array(range(40), pa.int64()), "text": [f"p{i}" for i in range(40)]}
    )
    pq.write_table(table.slice(0, 20), directory / "part-0.parquet")
    pq.write_table(table.slice(20), directory / "part-1.parquet")
    return directory


def test_the_client_moves_bytes_through_presigned_urls(
    served: Served, s3_env: S3Env, tmp_path: Path
) -> None:
    alice = served.client(ALICE, tmp_path / "cache")
    data = write_parts(tmp_path / "data")
    dataset = alice.datasets.create_arrow_dataset(data, account=ALICE, name="prompts")
    # the upload URL is the bucket's, signed for this object and its declared md5
    with served.api(ALICE) as api:
        signed = api.get(f"/datasets/{dataset.id}/upload/part-0.parquet").json()
    url = httpx.URL(signed["url"])
    assert str(url).startswith(
        f"{s3_env.endpoint}/{s3_env.bucket}/srv/{dataset.id}/part-0.parquet?"
    )
    md5 = hashlib.md5((data / "part-0.parquet").read_bytes(), usedforsecurity=False)
    assert signed["method"] == "PUT"
    assert signed["headers"]["Content-MD5"] == base64.b64encode(md5.digest()).decode()
    assert url.params["X-Amz-Expires"] == "3600"  # the server's signed_url_seconds

    dataset = alice.datasets.upload_arrow_dataset(dataset, data)
    assert dataset.status == Status.Ready, dataset.message
    keys = s3_env.keys(f"srv/{dataset.id}/")
    assert f"srv/{dataset.id}/part-0.parquet" in keys and f"srv/{dataset.id}/part-1.parquet" in keys
    # downloads: the bucket's URLs, md5 checked by the client
    with served.api(ALICE) as api:
        links = api.get(f"/datasets/{dataset.id}/downlinks").json()
    assert {link["signedURL"]["url"].split("?")[0] for link in links} == {
        f"{s3_env.endpoint}/{s3_env.bucket}/srv/{dataset.id}/part-{i}.parquet" for i in (0, 1)
    }
    files = alice.datasets.download(dataset.id, tmp_path / "down")
    assert sorted(f.name for f in files) == ["part-0.parquet", "part-1.parquet"]
    for file in files:
        assert file.read_bytes() == (data / file.name).read_bytes()
    assert alice.datasets.open(dataset.id).to_table().num_rows == 40


def test_another_account_gets_no_presigned_url(
    served: Served, s3_env: S3Env, tmp_path: Path
) -> None:
    alice = served.client(ALICE, tmp_path / "cache")
    data = write_parts(tmp_path / "data")
    waiting = alice.datasets.create_arrow_dataset(data, account=ALICE, name="waiting")
    ready = alice.datasets.upload_arrow_dataset(
        alice.datasets.create_arrow_dataset(data, account=ALICE, name="ready"), data
    )
    with served.api(BOB) as bob:
        for path in (
            f"/datasets/{waiting.id}/upload/part-0.parquet",
            f"/datasets/{ready.id}/downlinks",
            f"/datasets/{ready.id}/logs",
        ):
            reply = bob.get(path)
            assert reply.status_code in (403, 404), (path, reply.status_code)
            assert s3_env.endpoint not in reply.text and "X-Amz-Signature" not in reply.text
        # nor through the server's own storage routes, which the bucket's URLs replace
        reply = bob.get(f"/storage/datasets/{ready.id}/part-0.parquet")
        assert reply.status_code == 403


def test_finalize_checks_the_md5_of_what_reached_the_bucket(
    served: Served, s3_env: S3Env, tmp_path: Path
) -> None:
    """A body other than the declared file, PUT to the presigned URL: real S3 refuses it (the
    URL signs Content-MD5); moto does not check, so finalize must, from the bucket's bytes."""
    alice = served.client(ALICE, tmp_path / "cache")
    data = write_parts(tmp_path / "data")
    dataset = alice.datasets.create_arrow_dataset(data, account=ALICE, name="prompts")
    with served.api(ALICE) as api:
        for name in ("part-0.parquet", "part-1.parquet"):
            signed = api.get(f"/datasets/{dataset.id}/upload/{name}").json()
            body = (data / name).read_bytes()
            if name == "part-1.parquet":
                body = body[:-1] + b"\0"  # corrupted on the way
            reply = httpx.put(signed["url"], content=body, headers=signed["headers"])
            assert reply.status_code == 200, reply.text
        reply = api.post(f"/datasets/{dataset.id}/finalize")
        assert reply.status_code == 422, reply.text
        assert "'part-1.parquet' has md5" in reply.json()["detail"]
    again = alice.datasets.require(dataset.id)
    assert again.status == Status.Created and again.reason == "WaitingForUpload"
