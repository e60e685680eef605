"""Create requests spelled as the reference client (``dyff-client``) spells them: md5 digests
in base64, and ``mock`` runners without a configuration (``assay.server.compat``; the
reference client itself runs in ``tests/compat``)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from tests.server.conftest import ALICE
from tests.server.helpers import (
    Caller,
    Server,
    dataset_request,
    md5,
    model_request,
    module_files,
    module_request,
    parquet_bytes,
    service_request,
)

from assay.schema.base import EXTENSIONS_HEADER
from assay.server.compat import DEFAULT_MOCK, md5_hex

#: What the reference's runner carries instead of a configuration.
IMAGE = {"host": "assay.invalid", "name": "assay/mocks", "digest": "sha256:" + "0" * 64}


def md5_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def test_md5_hex() -> None:
    data = b"some bytes"
    assert md5_hex(md5_base64(data)) == md5(data)
    assert md5_hex(md5(data)) == md5(data)
    for other in ("", "x" * 24, "A" * 22 + "B=", md5_base64(data)[:-2]):  # not base64 of 16 bytes
        assert md5_hex(other) == other


def test_a_base64_digest_is_stored_as_hex_and_the_upload_checks_it(
    server: Server, alice: Caller
) -> None:
    data, schema = parquet_bytes()
    request = dataset_request(ALICE, data, schema)
    request["artifacts"][0]["digest"]["md5"] = md5_base64(data)
    dataset = alice.create("datasets", request)
    assert dataset["artifacts"][0]["digest"]["md5"] == md5(data)
    alice.upload("datasets", dataset["id"], {"part-0.parquet": data})
    assert server.wait(dataset["id"])["status"] == "Ready"

    # a base64 digest of other bytes is refused at upload, as a hex one is
    request["artifacts"][0]["digest"]["md5"] = md5_base64(b"other bytes")
    other = alice.create("datasets", request)["id"]
    signed = alice.ok("GET", f"/datasets/{other}/upload/part-0.parquet")
    response = server.client.put(signed["url"], content=data, headers=signed["headers"])
    assert response.status_code == 422 and md5(b"other bytes") in response.json()["detail"]


def test_a_models_volume_digests_are_stored_as_hex(alice: Caller) -> None:
    request: dict[str, Any] = {
        **model_request(ALICE),
        "artifact": {
            "kind": "Volume",
            "volume": {
                "files": [{"path": "weights.bin", "size": 3, "digest": {"md5": md5_base64(b"abc")}}]
            },
        },
        "source": {"kind": "Upload"},
    }
    model = alice.create("models", request)
    assert model["artifact"]["volume"]["files"][0]["digest"]["md5"] == md5(b"abc")


def _reference_service(args: list[str] | None = None) -> dict[str, Any]:
    request = service_request(ALICE)
    request["runner"] = {"kind": "mock", "image": IMAGE, "resources": {}}
    if args is not None:
        request["runner"]["args"] = args
    return request


@pytest.mark.parametrize(
    ("args", "served"),
    [(None, DEFAULT_MOCK), (["assay.local.mocks.ChatModel"], "assay.local.mocks.ChatModel")],
)
def test_a_mock_runner_without_configuration_serves_its_args_or_the_default(
    alice: Caller, args: list[str] | None, served: str
) -> None:
    service = alice.create("inferenceservices", _reference_service(args))
    assert service["status"] == "Ready"
    # the reference's wire names the mock in args[0]; Assay's has its configuration
    assert service["runner"]["args"] == [served] and "configuration" not in service["runner"]
    extended = alice.ok(
        "GET", f"/inferenceservices/{service['id']}", headers={EXTENSIONS_HEADER: "true"}
    )
    assert extended["runner"]["configuration"] == {"mockType": served}


def test_a_mock_runner_without_configuration_is_still_only_assays_mocks(alice: Caller) -> None:
    response = alice.post("/inferenceservices", json=_reference_service(["os.system"]))
    assert response.status_code == 422
    assert "'os.system' is not one of Assay's mocks" in response.json()["detail"]
    assert "args[0]" in response.json()["detail"]
    assert alice.ok("GET", "/inferenceservices") == []  # nothing half-created


def test_a_reference_style_mock_serves_inference(server: Server, alice: Caller) -> None:
    service = alice.create("inferenceservices", _reference_service())["id"]
    created = alice.create("inferencesessions", {"account": ALICE, "inferenceService": service})
    session = created["inferencesession"]["id"]
    assert server.wait(session)["status"] == "Ready"
    reply = alice.post(
        f"/inferencesessions/{session}/infer/generate",
        json={"text": "Hello"},
        headers={"Authorization": f"Bearer {created['token']}"},
    )
    assert reply.status_code == 200, reply.text
    assert all(item["text"].startswith("Hello") for item in reply.json())


def test_answers_are_in_the_references_wire_format_unless_assays_is_asked_for(
    server: Server, alice: Caller
) -> None:
    """Assay's extensions — a runner's configuration, Assay's runner kinds, Assay's
    evaluation client options — are on the wire only for ``X-Assay-Extensions: true``;
    fields the reference requires (``runner.resources``) are always there."""
    mock = alice.create("inferenceservices", service_request(ALICE))
    assert mock["runner"] == {
        "kind": "mock",
        "nodes": 1,
        "resources": {},
        "args": ["assay.local.mocks.TextCompletion"],
    }
    module = alice.create("modules", module_request(ALICE, module_files()))["id"]
    request = service_request(ALICE)
    request["runner"] = {"kind": "python", "configuration": {"module": module, "target": "a:B"}}
    python = alice.create("inferenceservices", request)
    assert "runner" not in python  # a kind the reference does not know
    again = alice.ok("GET", f"/inferenceservices/{python['id']}", headers={EXTENSIONS_HEADER: "1"})
    assert again["runner"]["kind"] == "python"
    data, schema = parquet_bytes()
    dataset = alice.create("datasets", dataset_request(ALICE, data, schema))["id"]
    evaluation = alice.create(
        "evaluations",
        {
            "account": ALICE,
            "dataset": dataset,
            "inferenceSession": {"inferenceService": mock["id"]},
            "client": {"cache": True, "requestBatchSize": 4},
        },
    )
    assert not {"cache", "requestBatchSize", "transientErrorRetryBudgetSeconds"} & set(
        evaluation["client"]
    )
    assert "configuration" not in evaluation["inferenceSession"]["inferenceService"]["runner"]

    extended = {EXTENSIONS_HEADER: "true"}
    full = alice.ok("GET", f"/evaluations/{evaluation['id']}", headers=extended)
    assert full["client"]["cache"] is True and full["client"]["requestBatchSize"] == 4
    assert full["client"]["transientErrorRetryBudgetSeconds"] == 600
    runner = full["inferenceSession"]["inferenceService"]["runner"]
    assert runner["configuration"]["mockType"] == "assay.local.mocks.TextCompletion"
    listed = alice.ok("GET", "/inferenceservices", headers={EXTENSIONS_HEADER: "true"})
    assert [s["runner"]["kind"] for s in listed] == ["mock", "python"]
    assert "configuration" in listed[0]["runner"] and "resources" not in listed[0]["runner"]
    listed = alice.ok("GET", "/inferenceservices", headers={EXTENSIONS_HEADER: "false"})
    assert [s.get("runner", {}).get("kind") for s in listed] == ["mock", None]
    assert "configuration" not in listed[0]["runner"]
