"""The audit workflow over HTTP: a data set, an evaluation of a mock service, a measurement, a
safety case with scores and curves, their documents, downloads and logs."""

from __future__ import annotations

import io
import json
from typing import Any

import nbformat
import pyarrow.parquet as pq
from tests.server.conftest import ALICE
from tests.server.helpers import (
    Caller,
    Server,
    analysis_request,
    dataset_request,
    md5,
    measurement_method_request,
    notebook_method_request,
    parquet_bytes,
    service_request,
)

NOTEBOOK_CELLS = [
    """\
from assay.analysis import AnalysisContext
import pyarrow.compute as pc

ctx = AnalysisContext()
lengths = ctx.inputs("lengths").to_table()["length"]
mean = pc.mean(lengths).as_py()
""",
    """\
ctx.TitleCard(headline="Length audit over HTTP", author="The server tests",
              summary_phrase="Moderate", summary_text="We measured every answer.")
""",
    'ctx.Score("mean_length", f"Answers average {mean:.0f} characters.", mean)\n',
    """\
ctx.Curve("share_below", "Share of answers below each threshold.",
          {"threshold": [10.0, 100.0],
           "share": [pc.mean(pc.less(lengths, t).cast("float64")).as_py() for t in (10, 100)]})
""",
]

SCORES: list[dict[str, Any]] = [
    {
        "name": "mean_length",
        "title": "Mean answer length",
        "summary": "The mean number of characters in an answer.",
        "minimum": 0,
        "maximum": 10000,
        "unit": "chars",
    },
    {
        "name": "share_below",
        "title": "Length distribution",
        "summary": "The share of answers below each length.",
        "dimensions": {
            "threshold": {"name": "threshold", "title": "Threshold", "summary": "Characters."},
            "share": {"name": "share", "title": "Share", "summary": "Share of answers."},
        },
    },
]


def _notebook() -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Length audit")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in NOTEBOOK_CELLS]
    return nbformat.writes(nb).encode()


def _files() -> dict[str, bytes]:
    from tests.server.helpers import METRICS

    return {"audit/__init__.py": b"", "audit/metrics.py": METRICS.encode(), "ok.ipynb": _notebook()}


def _download(server: Server, link: dict[str, Any]) -> bytes:
    response = server.client.get(link["signedURL"]["url"])
    assert response.status_code == 200, response.text
    assert md5(response.content) == link["artifact"]["digest"]["md5"]
    return response.content


def test_audit_over_http(server: Server, alice: Caller, bob: Caller) -> None:
    data, schema = parquet_bytes(rows=12)
    dataset = alice.create("datasets", dataset_request(ALICE, data, schema))["id"]
    alice.upload("datasets", dataset, {"part-0.parquet": data})
    files = _files()
    module = alice.create(
        "modules",
        {
            "account": ALICE,
            "name": "audit",
            "artifacts": [{"path": p, "digest": {"md5": md5(d)}} for p, d in files.items()],
        },
    )["id"]
    alice.upload("modules", module, files)
    service = alice.create("inferenceservices", service_request(ALICE))["id"]

    # the evaluation runs in the background: create answers before it is done
    evaluation = alice.create(
        "evaluations",
        {"account": ALICE, "dataset": dataset, "inferenceSession": {"inferenceService": service}},
    )
    assert evaluation["status"] in ("Created", "Admitted", "Complete")
    assert server.wait(evaluation["id"])["status"] == "Complete"
    evaluation_id = evaluation["id"]
    links = alice.ok("GET", f"/evaluations/{evaluation_id}/downlinks")
    assert links and all(link["artifact"]["path"].endswith(".parquet") for link in links)
    rows = sum(pq.read_table(io.BytesIO(_download(server, link))).num_rows for link in links)
    assert rows == 12
    evaluation_logs = alice.ok("GET", f"/evaluations/{evaluation_id}/logs/workflow")
    assert evaluation_logs["workflow"] == {"kind": "Evaluation", "id": evaluation_id}
    assert evaluation_logs["totalLines"] == len(evaluation_logs["logs"])
    assert all(entry["labels"]["stream"] for entry in evaluation_logs["logs"])

    method = alice.create("methods", measurement_method_request(ALICE, module))["id"]
    measurement = alice.create(
        "measurements",
        analysis_request(ALICE, method, evaluation_id, "evaluation", evaluation_id),
    )["id"]
    finished = server.wait(measurement)
    assert finished["status"] == "Complete", finished.get("message")
    logs = alice.ok("GET", f"/measurements/{measurement}/logs/workflow")
    assert logs["workflow"] == {"kind": "Measurement", "id": measurement}
    assert "measured 12 rows" in [entry["message"] for entry in logs["logs"]]
    assert logs["totalLines"] >= 1 and logs["logs"][0]["timestamp"].endswith("Z")
    limited = alice.ok("GET", f"/measurements/{measurement}/logs/workflow", params={"limit": 1})
    assert len(limited["logs"]) == 1 and limited["totalLines"] == logs["totalLines"]
    future = alice.ok(
        "GET",
        f"/measurements/{measurement}/logs/workflow",
        params={"since": "2999-01-01T00:00:00Z"},
    )
    assert future["logs"] == []
    assert (
        alice.get(
            f"/measurements/{measurement}/logs/workflow", params={"since": "soon"}
        ).status_code
        == 422
    )
    log_link = alice.ok("GET", f"/measurements/{measurement}/logs")
    assert b"measured 12 rows" in server.client.get(log_link["signedURL"]["url"]).content
    (measured,) = alice.ok("GET", f"/measurements/{measurement}/downlinks")
    lengths = pq.read_table(io.BytesIO(_download(server, measured)))["length"].to_pylist()
    assert len(lengths) == 12

    case_method = alice.create(
        "methods", notebook_method_request(ALICE, module, "ok.ipynb", SCORES)
    )["id"]
    case = alice.create(
        "safetycases",
        analysis_request(ALICE, case_method, evaluation_id, "lengths", measurement),
    )["id"]
    finished = server.wait(case)
    assert finished["status"] == "Complete", finished.get("message")

    (score,) = alice.ok("GET", f"/safetycases/{case}/scores")
    assert score["name"] == "mean_length" and score["analysis"] == case
    assert abs(score["quantity"] - sum(lengths) / len(lengths)) < 1e-9
    assert score["metadata"]["refs"]["evaluation"] == evaluation_id
    (curve,) = alice.ok("GET", f"/safetycases/{case}/curves")
    assert curve["points"]["threshold"] == [10.0, 100.0]

    assert alice.ok("GET", "/safetycases/scores", params={"method": case_method}) == [score]
    assert alice.ok("GET", "/scores", params={"name": "mean_length"}) == [score]
    assert alice.ok("GET", "/scores", params={"query": json.dumps({"analysis": [case]})}) == [score]
    assert alice.ok("GET", "/scores", params={"methodName": "case"}) == [score]
    assert alice.ok("GET", "/scores", params={"name": "other"}) == []
    assert alice.ok("GET", "/safetycases/curves", params={"analysis": case}) == [curve]
    assert alice.ok("GET", "/scores", params={"limit": 1, "after": score["id"]}) == []
    assert alice.get("/scores", params={"colour": "red"}).status_code == 422

    document = alice.get(f"/safetycases/{case}/document")
    assert document.status_code == 200
    assert document.headers["content-type"].startswith("text/html")
    assert "sandbox" in document.headers["content-security-policy"]
    assert "Length audit over HTTP" in document.text

    # another account sees none of it
    assert bob.ok("GET", "/scores") == []
    assert bob.ok("GET", "/safetycases/scores", params={"method": case_method}) == []
    assert bob.get(f"/safetycases/{case}/scores").status_code == 404
    assert bob.get(f"/safetycases/{case}/document").status_code == 404
    assert bob.get(f"/measurements/{measurement}/logs/workflow").status_code == 404
    assert bob.get(f"/measurements/{measurement}/logs").status_code == 404


def test_document_of_an_unfinished_safety_case_is_409(
    server: Server, alice: Caller, world: dict[str, str]
) -> None:
    response = alice.get(f"/safetycases/{world['safetycases']}/document")
    assert response.status_code == 409
    assert "wait for it" in response.json()["detail"]
    assert alice.ok("GET", f"/safetycases/{world['safetycases']}/scores") == []


def test_since_takes_durations_and_times() -> None:
    from datetime import UTC, datetime, timedelta

    import pytest

    from assay import errors
    from assay.server.routes.logs import parse_since

    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("2030-01-01T00:00:00Z", now) == datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_since("2030-01-01T00:00:00", now).tzinfo is UTC
    with pytest.raises(errors.ValidationError, match="duration"):
        parse_since("yesterday", now)
