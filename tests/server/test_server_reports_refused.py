"""``POST /v0/reports`` is refused with 422: Reports are deprecated in the specification and
Assay does not run them; nothing is stored. Report records that exist are still served."""

from __future__ import annotations

from tests.server.conftest import ALICE
from tests.server.helpers import Caller, Server


def test_report_creation_is_refused_with_422_and_nothing_is_stored(
    server: Server, alice: Caller, world: dict[str, str]
) -> None:
    before = {doc["id"] for doc in server.core.store.query()}
    listed = alice.ok("GET", "/reports")
    for body in (
        {"account": ALICE, "rubric": "x.Rubric", "evaluation": world["evaluations"]},
        {
            "account": ALICE,
            "rubric": "x.Rubric",
            "evaluation": world["evaluations"],
            "modules": [world["modules"]],
        },
    ):
        response = alice.post("/reports", json=body)
        assert response.status_code == 422, response.text
        assert response.headers["X-Assay-Error"] == "ValidationError"
        detail = response.json()["detail"]
        assert "Reports are deprecated in the specification" in detail
        assert "Assay does not run them" in detail
        assert "methods.create" in detail and "measurements.create" in detail
    assert alice.ok("GET", "/reports") == listed
    assert [r["id"] for r in listed] == [world["reports"]]  # the imported one, only
    assert {doc["id"] for doc in server.core.store.query()} == before


def test_an_existing_report_is_still_read(alice: Caller, world: dict[str, str]) -> None:
    report = alice.ok("GET", f"/reports/{world['reports']}")
    assert (report["kind"], report["status"]) == ("Report", "Complete")
    found = alice.ok("GET", "/reports", params={"evaluation": world["evaluations"]})
    assert [r["id"] for r in found] == [world["reports"]]
