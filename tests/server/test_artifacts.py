"""Uploads through signed URLs, finalize, downlinks and downloads — and the ways signed URLs
and uploads are refused."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from tests.server.conftest import ALICE
from tests.server.helpers import (
    Caller,
    Server,
    dataset_request,
    md5,
    module_files,
    module_request,
    parquet_bytes,
)


def _new_dataset(alice: Caller) -> tuple[str, bytes]:
    data, schema = parquet_bytes()
    return alice.create("datasets", dataset_request(ALICE, data, schema))["id"], data


def test_dataset_upload_finalize_downlinks_and_download(server: Server, alice: Caller) -> None:
    dataset, data = _new_dataset(alice)
    assert alice.ok("GET", f"/datasets/{dataset}")["reason"] == "WaitingForUpload"
    status = alice.upload("datasets", dataset, {"part-0.parquet": data})
    assert status["status"] in ("Created", "Admitted", "Ready")
    assert server.wait(dataset)["status"] == "Ready"
    entity = alice.ok("GET", f"/datasets/{dataset}")
    assert entity["status"] == "Ready" and "12 instances" in entity["message"]

    (link,) = alice.ok("GET", f"/datasets/{dataset}/downlinks")
    assert link["artifact"] == {
        "kind": "parquet",
        "path": "part-0.parquet",
        "digest": {"md5": md5(data)},
    }
    assert link["signedURL"]["method"] == "GET"
    response = server.client.get(link["signedURL"]["url"], headers=link["signedURL"]["headers"])
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-length"] == str(len(data))

    # its files cannot change once finalized
    response = alice.get(f"/datasets/{dataset}/upload/part-0.parquet")
    assert response.status_code == 409 and "not waiting for an upload" in response.json()["detail"]


def test_module_files_in_directories_and_hidden_files_left_out(
    server: Server, alice: Caller
) -> None:
    files = module_files()
    module = alice.create("modules", module_request(ALICE, files))["id"]
    alice.upload("modules", module, files)
    assert server.wait(module)["status"] == "Ready"
    links = alice.ok("GET", f"/modules/{module}/downlinks")
    assert sorted(link["artifact"]["path"] for link in links) == sorted(files)
    for link in links:
        body = server.client.get(link["signedURL"]["url"]).content
        assert body == files[link["artifact"]["path"]]


def test_wrong_bytes_are_refused_and_nothing_is_half_registered(
    server: Server, alice: Caller
) -> None:
    dataset, data = _new_dataset(alice)
    signed = alice.ok("GET", f"/datasets/{dataset}/upload/part-0.parquet")
    reply = server.client.put(signed["url"], content=b"not the declared bytes")
    assert reply.status_code == 422
    assert "md5" in reply.json()["detail"]
    assert not server.core.storage.exists(dataset, "part-0.parquet")

    response = alice.post(f"/datasets/{dataset}/finalize")
    assert response.status_code == 422 and "not uploaded" in response.json()["detail"]
    entity = alice.ok("GET", f"/datasets/{dataset}")
    assert (entity["status"], entity["reason"]) == ("Created", "WaitingForUpload")

    # the same URL works for the right bytes; then finalize succeeds
    assert server.client.put(signed["url"], content=data).status_code == 200
    alice.ok("POST", f"/datasets/{dataset}/finalize")
    assert server.wait(dataset)["status"] == "Ready"


def test_finalize_checks_digests_of_files_changed_in_storage(server: Server, alice: Caller) -> None:
    dataset, data = _new_dataset(alice)
    signed = alice.ok("GET", f"/datasets/{dataset}/upload/part-0.parquet")
    assert server.client.put(signed["url"], content=data).status_code == 200
    server.core.storage.put_bytes(dataset, "part-0.parquet", b"changed behind our back")
    response = alice.post(f"/datasets/{dataset}/finalize")
    assert response.status_code == 422 and "md5" in response.json()["detail"]
    assert alice.ok("GET", f"/datasets/{dataset}")["reason"] == "WaitingForUpload"


def test_upload_of_an_undeclared_or_traversing_path(server: Server, alice: Caller) -> None:
    dataset, _ = _new_dataset(alice)
    response = alice.get(f"/datasets/{dataset}/upload/other.parquet")
    assert response.status_code == 422 and "part-0.parquet" in response.json()["detail"]
    for path in ("%2E%2E/x", "..%2Fx", "a/%2E%2E/%2E%2E/x", "%2Fetc/passwd"):
        response = alice.get(f"/datasets/{dataset}/upload/{path}")
        assert response.status_code == 400, (path, response.text)
        assert "not a valid artifact path" in response.json()["detail"]
    # a client that resolves '..' itself asks for another route
    assert alice.get(f"/datasets/{dataset}/upload/../x").status_code == 404
    # a signed URL whose path is rewritten to escape the entity is refused too
    signed = alice.ok("GET", f"/datasets/{dataset}/upload/part-0.parquet")
    escaped = signed["url"].replace("part-0.parquet", "..%2F..%2Fescape")
    assert server.client.put(escaped, content=b"x").status_code == 403


def _tampered(url: str, signature: str) -> str:
    return url.split("?")[0] + "?signature=" + signature


def test_signed_urls_cannot_be_altered_reused_or_used_late(server: Server, alice: Caller) -> None:
    dataset, data = _new_dataset(alice)
    other, _ = _new_dataset(alice)
    signed = alice.ok("GET", f"/datasets/{dataset}/upload/part-0.parquet")
    url = signed["url"]
    signature = parse_qs(urlsplit(url).query)["signature"][0]
    client = server.client

    # another entity, another path, another method
    assert client.put(url.replace(dataset, other), content=data).status_code == 403
    assert client.put(url.replace("part-0", "part-1"), content=data).status_code == 403
    assert client.get(url).status_code == 403
    # an altered or missing signature, or a bearer token in its place
    flipped = signature[:-3] + ("AAA" if not signature.endswith("AAA") else "BBB")
    assert client.put(_tampered(url, flipped), content=data).status_code == 403
    assert client.put(url.split("?")[0], content=data).status_code == 403
    token = server.token(ALICE)
    assert client.put(_tampered(url, token), content=data).status_code == 403
    # expired
    base = str(client.base_url).rstrip("/")
    late = server.state.urls.url(base, "PUT", "datasets", dataset, "part-0.parquet", lifetime=-1)
    response = client.put(late.url, content=data)
    assert response.status_code == 403 and "expired" in response.json()["detail"]

    assert not server.core.storage.exists(dataset, "part-0.parquet")
    assert client.put(url, content=data).status_code == 200  # the genuine one still works


def test_upload_needs_content_length_and_respects_the_limit(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from starlette.testclient import TestClient

    from assay.server import ServerSettings, create_app

    settings = ServerSettings(data_dir=tmp_path_factory.mktemp("small"), max_upload_bytes=100)
    with TestClient(create_app(settings)) as client:
        server = Server(client, settings)
        alice = server.as_account(ALICE)
        dataset, data = _new_dataset(alice)
        signed = alice.ok("GET", f"/datasets/{dataset}/upload/part-0.parquet")
        response = client.put(signed["url"], content=data)
        assert response.status_code == 413 and "larger than" in response.json()["detail"]

        def chunks() -> list[bytes]:
            return [b"abc"]

        response = client.put(signed["url"], content=iter(chunks()))  # chunked: no length
        assert response.status_code == 411
        assert not server.core.storage.exists(dataset, "part-0.parquet")


def test_downlinks_wait_for_success(server: Server, alice: Caller) -> None:
    dataset, _ = _new_dataset(alice)
    response = alice.get(f"/datasets/{dataset}/downlinks")
    assert response.status_code == 409 and "Ready or Complete" in response.json()["detail"]


def test_download_of_a_missing_artifact_is_404(server: Server, alice: Caller) -> None:
    dataset, _ = _new_dataset(alice)
    base = str(server.client.base_url).rstrip("/")
    signed = server.state.urls.url(base, "GET", "datasets", dataset, "part-0.parquet")
    assert server.client.get(signed.url).status_code == 404
