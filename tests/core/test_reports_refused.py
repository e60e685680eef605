"""Report creation is refused (issue 15, item 7): the specification deprecates Reports
("creation of new Reports is disabled") and Assay does not run them. The refusal names the
replacement — a Method run as a Measurement — and stores nothing; Report records that exist
(fetched ones) are still read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.conftest import ACCOUNT, evaluation_request, service_request, write_dataset

from assay import errors
from assay.local import LocalPlatform
from assay.schema import ids
from assay.schema.requests import ReportCreateRequest


def _evaluation(platform: LocalPlatform, tmp_path: Path) -> Any:
    """An Evaluation that waits (its Dataset is not uploaded): nothing runs meanwhile."""
    data = write_dataset(tmp_path / "data", rows=2)
    dataset = platform.datasets.create_arrow_dataset(data, account=ACCOUNT, name="data")
    service = platform.inferenceservices.create(service_request())
    return platform.evaluations.create(evaluation_request(dataset.id, service.id))


def _check_refusal(exc: errors.ValidationError) -> None:
    message = str(exc)
    assert "Reports are deprecated in the specification" in message
    assert "Assay does not run them" in message
    assert "create a Method" in message and "methods.create" in message
    assert "as a Measurement" in message and "measurements.create" in message
    assert exc.entity == "Report"


def _ids(platform: LocalPlatform) -> set[str]:
    return {doc["id"] for doc in platform._core.store.query()}


def test_a_valid_report_request_is_refused_and_nothing_is_stored(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    evaluation = _evaluation(platform, tmp_path)
    before = _ids(platform)
    requests: list[Any] = [
        {"account": ACCOUNT, "rubric": "classification.TopKAccuracy", "evaluation": evaluation.id},
        ReportCreateRequest(account=ACCOUNT, rubric="x.Rubric", evaluation=evaluation.id),
        # refused for what it is, before any field is looked at
        {"account": ACCOUNT, "rubric": "x.Rubric", "evaluation": "0" * 32},
        {"rubric": "x.Rubric"},
    ]
    for request in requests:
        with pytest.raises(errors.ValidationError) as info:
            platform.reports.create(request)
        _check_refusal(info.value)
    assert platform.reports.query() == []
    assert platform.reports.query(evaluation=evaluation.id) == []
    assert _ids(platform) == before  # no record of any kind was written
    assert platform._core.store.query(kind="Report") == []


def test_existing_report_records_are_still_read(platform: LocalPlatform, tmp_path: Path) -> None:
    evaluation = _evaluation(platform, tmp_path)
    doc = {
        "kind": "Report",
        "id": ids.generate_entity_id(),
        "account": ACCOUNT,
        "status": "Complete",
        "creationTime": "2024-01-01T00:00:00Z",
        "rubric": "x.Rubric",
        "evaluation": evaluation.id,
        "dataset": evaluation.dataset,
        "inferenceService": evaluation.inferenceSession.inferenceService.id,
    }
    imported = platform.reports._import_record(doc)  # as fetch() stores one
    assert platform.reports.get(imported.id) == imported
    assert platform.reports.require(imported.id).rubric == "x.Rubric"
    assert [r.id for r in platform.reports.query()] == [imported.id]
    assert [r.id for r in platform.reports.query(evaluation=evaluation.id)] == [imported.id]
    assert platform.reports.get("0" * 32) is None
