"""``PUT /R/{id}/terminate`` of evaluations, measurements and safety cases: the entity's status,
409 once it has ended, and the access policy of delete (``terminate`` or ``delete`` grants)."""

from __future__ import annotations

from typing import Any

from tests.server.conftest import ALICE
from tests.server.helpers import Caller, Server, dataset_request, parquet_bytes, service_request

from assay.server.routes.entities import TERMINABLE


def _waiting_evaluation(alice: Caller) -> str:
    """An Evaluation that waits (Created) for a Dataset that waits for its upload."""
    data, schema = parquet_bytes()
    dataset = alice.create("datasets", dataset_request(ALICE, data, schema))["id"]
    service = alice.create("inferenceservices", service_request(ALICE))["id"]
    evaluation = alice.create(
        "evaluations",
        {"account": ALICE, "dataset": dataset, "inferenceSession": {"inferenceService": service}},
    )
    assert evaluation["status"] == "Created", evaluation
    return str(evaluation["id"])


def test_terminate_answers_the_status_then_409(server: Server, alice: Caller) -> None:
    evaluation = _waiting_evaluation(alice)
    status = alice.ok("PUT", f"/evaluations/{evaluation}/terminate")
    assert (status["status"], status["reason"]) == ("Terminated", "TerminateCommand")
    assert alice.ok("GET", f"/evaluations/{evaluation}")["status"] == "Terminated"
    again = alice.put(f"/evaluations/{evaluation}/terminate")
    assert again.status_code == 409
    detail = again.json()["detail"]
    assert evaluation in detail and "Terminated (TerminateCommand)" in detail
    missing = alice.put(f"/evaluations/{'0' * 32}/terminate")
    assert missing.status_code == 404


def test_terminate_needs_terminate_or_delete(server: Server, alice: Caller, bob: Caller) -> None:
    evaluation = _waiting_evaluation(alice)

    def grant(*functions: str) -> list[dict[str, Any]]:
        return [
            {"resources": ["evaluations"], "functions": ["get", *functions], "accounts": [ALICE]}
        ]

    reader = server.as_account(ALICE, grant())
    assert reader.put(f"/evaluations/{evaluation}/terminate").status_code == 403
    assert bob.put(f"/evaluations/{evaluation}/terminate").status_code == 404
    assert alice.ok("GET", f"/evaluations/{evaluation}")["status"] == "Created"
    deleter = server.as_account(ALICE, grant("delete"))
    assert deleter.ok("PUT", f"/evaluations/{evaluation}/terminate")["status"] == "Terminated"
    other = _waiting_evaluation(alice)
    terminator = server.as_account(ALICE, grant("terminate"))
    assert terminator.ok("PUT", f"/evaluations/{other}/terminate")["status"] == "Terminated"


def test_only_jobs_have_a_terminate_route(server: Server, alice: Caller) -> None:
    paths = alice.client.get("/openapi.json").json()["paths"]
    with_route = {p.split("/")[2] for p in paths if p.endswith("/{id}/terminate")}
    assert with_route == {*TERMINABLE, "inferencesessions"}
    data, schema = parquet_bytes()
    dataset = alice.create("datasets", dataset_request(ALICE, data, schema))["id"]
    assert alice.put(f"/datasets/{dataset}/terminate").status_code in (404, 405)
