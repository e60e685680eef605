"""The Client refuses Report creation as LocalPlatform and the server do (Reports are
deprecated in the specification); Report records that exist are still read."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.client.conftest import ALICE, LiveServer

from assay import errors
from assay.client import Client
from assay.local import mocks
from assay.schema import ids


def test_report_creation_is_refused_and_records_are_read(
    make_client: Callable[..., Client], live_server: LiveServer
) -> None:
    client = make_client()
    service = client.inferenceservices.create_mock(mocks.TextCompletion, account=ALICE)
    before = {r.id for r in client.reports.query()}
    with pytest.raises(errors.ValidationError) as info:
        client.reports.create({"account": ALICE, "rubric": "x.Rubric", "evaluation": "0" * 32})
    message = str(info.value)
    assert "Reports are deprecated in the specification" in message
    assert "methods.create" in message and "measurements.create" in message
    assert {r.id for r in client.reports.query()} == before

    # a Report record stored as a fetched one is: the Client reads it
    doc = {
        "kind": "Report",
        "id": ids.generate_entity_id(),
        "account": ALICE,
        "status": "Complete",
        "creationTime": "2024-01-01T00:00:00Z",
        "rubric": "x.Rubric",
        "evaluation": "e" * 32,
        "dataset": "d" * 32,
        "inferenceService": service.id,
    }
    live_server.core.reports._import_record(doc)
    report = client.reports.get(doc["id"])
    assert report is not None and report.rubric == "x.Rubric"
    assert doc["id"] in {r.id for r in client.reports.query(inferenceService=service.id)}
