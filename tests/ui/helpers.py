"""Helpers for the web UI's tests: signing a TestClient in through the form, the CSRF token of
a page, and a finished audit (a Complete safety case with a score and a curve) made through
the API."""

from __future__ import annotations

import re
from typing import Any

import httpx
import nbformat
from starlette.testclient import TestClient
from tests.server.helpers import (
    METRICS,
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

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

CASE_CELLS = [
    "from assay.analysis import AnalysisContext\n"
    "import pyarrow.compute as pc\n"
    "ctx = AnalysisContext()\n"
    'lengths = ctx.inputs("lengths").to_table()["length"]\n'
    "mean = pc.mean(lengths).as_py()\n",
    'ctx.TitleCard(headline="UI audit", author="The UI tests", summary_phrase="Fine",\n'
    '              summary_text="We measured every answer.")\n',
    'ctx.Score("mean_length", f"Answers average {mean:.0f} characters.", mean)\n',
    'ctx.Curve("share_below", "Share of answers below each threshold.",\n'
    '          {"threshold": [10.0, 100.0],\n'
    '           "share": [pc.mean(pc.less(lengths, t).cast("float64")).as_py()\n'
    "                     for t in (10, 100)]})\n",
]

CASE_SCORES: list[dict[str, Any]] = [
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


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token in the first form of ``page``."""
    match = _CSRF.search(page.text)
    assert match, f"no csrf_token field on the page:\n{page.text[:2000]}"
    return match.group(1)


def sign_in(client: TestClient, token: str) -> httpx.Response:
    """Sign ``client`` in through the sign-in form (as a browser would); the form's answer."""
    form = client.get("/signin")
    assert form.status_code == 200, form.text
    return client.post(
        "/signin", data={"csrf_token": csrf_of(form), "token": token}, follow_redirects=False
    )


def _notebook() -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# UI audit")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in CASE_CELLS]
    return nbformat.writes(nb).encode()


def complete_audit(server: Server, caller: Caller, account: str) -> dict[str, str]:
    """A whole audit that has run: resource → id of a Ready dataset and module, a service, a
    Complete evaluation and measurement, and a Complete safety case with one Score and one
    Curve (``safetycases``)."""
    out: dict[str, str] = {}
    data, schema = parquet_bytes(rows=12)
    out["datasets"] = dataset = caller.create("datasets", dataset_request(account, data, schema))[
        "id"
    ]
    caller.upload("datasets", dataset, {"part-0.parquet": data})
    files = {
        "audit/__init__.py": b"",
        "audit/metrics.py": METRICS.encode(),
        "case.ipynb": _notebook(),
    }
    module_body = {
        "account": account,
        "name": "audit",
        "artifacts": [{"path": p, "digest": {"md5": md5(d)}} for p, d in files.items()],
    }
    out["modules"] = module = caller.create("modules", module_body)["id"]
    caller.upload("modules", module, files)
    out["inferenceservices"] = service = caller.create(
        "inferenceservices", service_request(account)
    )["id"]
    out["evaluations"] = evaluation = caller.create(
        "evaluations",
        {"account": account, "dataset": dataset, "inferenceSession": {"inferenceService": service}},
    )["id"]
    assert server.wait(evaluation)["status"] == "Complete"
    out["methods"] = method = caller.create("methods", measurement_method_request(account, module))[
        "id"
    ]
    out["measurements"] = measurement = caller.create(
        "measurements", analysis_request(account, method, evaluation, "evaluation", evaluation)
    )["id"]
    assert server.wait(measurement)["status"] == "Complete"
    case_method = caller.create(
        "methods", notebook_method_request(account, module, "case.ipynb", CASE_SCORES)
    )["id"]
    out["safetycases"] = case = caller.create(
        "safetycases", analysis_request(account, case_method, evaluation, "lengths", measurement)
    )["id"]
    finished = server.wait(case)
    assert finished["status"] == "Complete", finished.get("message")
    return out
