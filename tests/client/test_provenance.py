"""Provenance through the server: ``Client.provenance``/``Client.verify``, the routes
``GET /v0/<kind>/{id}/provenance`` and ``/verify``, and what another account gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from tests.client.conftest import ALICE, LiveServer
from tests.client.test_audit import uploaded_dataset

from assay import provenance
from assay.client import Client
from assay.local import mocks


def _evaluation(client: Client, tmp_path: Path) -> tuple[str, str]:
    dataset = uploaded_dataset(client, tmp_path)
    service = client.inferenceservices.create_mock(
        mocks.TextCompletion, account=ALICE, kwargs={"seed": 1}
    )
    evaluation = client.evaluations.create(
        {
            "account": ALICE,
            "dataset": dataset.id,
            "inferenceSession": {"inferenceService": service.id},
        }
    )
    finished = client.evaluations.wait(evaluation.id, timeout=60)
    assert finished.status == "Complete", finished.message
    return dataset.id, evaluation.id


def test_provenance_and_verify_through_the_client(
    make_client: Any, live_server: LiveServer, tmp_path: Path
) -> None:
    alice: Client = make_client(ALICE)
    dataset, evaluation = _evaluation(alice, tmp_path)
    block = alice.provenance(evaluation)
    assert block is not None and block["inputs"][0]["id"] == dataset
    # the summary is an ordinary annotation of the entity, as every reader sees it
    entity = alice.evaluations.get(evaluation)
    assert entity is not None
    assert provenance.from_annotations(entity.annotations, evaluation) == provenance.summary(block)
    result = alice.verify(evaluation)
    assert result.ok, str(result)
    # one changed byte of the data set, on the server's disk: named through the API
    path = sorted(block["output"]["files"])[0]
    target = live_server.data_dir / evaluation / path
    original = target.read_bytes()
    target.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        result = alice.verify(evaluation)
        assert not result.ok
        [bad] = result.mismatches
        assert (bad.kind, bad.id, bad.artifact, bad.expected) == (
            "Evaluation",
            evaluation,
            path,
            block["output"]["files"][path],
        )
    finally:
        target.write_bytes(original)


def test_another_account_gets_what_a_missing_id_gets(
    make_client: Any, live_server: LiveServer, tmp_path: Path
) -> None:
    alice: Client = make_client(ALICE)
    _, evaluation = _evaluation(alice, tmp_path)
    bob = live_server.token("bob")
    missing = "0" * 32
    answers = []
    for id in (evaluation, missing):
        for what in ("provenance", "verify"):
            response = httpx.get(
                f"{live_server.url}/v0/evaluations/{id}/{what}",
                headers={"Authorization": f"Bearer {bob}"},
            )
            answers.append((response.status_code, response.text.replace(id, "ID")))
    assert answers[0] == answers[2] and answers[1] == answers[3], answers
    assert answers[0][0] == 404
