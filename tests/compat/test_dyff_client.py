"""The reference client (``dyff-client``, in its own environment) runs the whole audit workflow
against a real ``assay serve``: data set upload, a mock service, a session with inference, an
evaluation, a module, a measurement, a safety case with its score, labels, documentation,
queries, a family's members and a delete (``dyff_audit.py`` is the script; this test checks what it saw, and
that the server answered it without a server error)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.server.loopback import Served

from assay.client import Client

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("dyff_audit.py")
ACCOUNT = "alice"
ROWS = 8


def _run_audit(python: Path, served: Served, work: Path) -> dict[str, Any]:
    token = served.token(ACCOUNT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DYFF_"))}
    env["TQDM_DISABLE"] = "1"  # the reference client's progress bars
    done = subprocess.run(
        [str(python), str(SCRIPT), f"{served.url}/v0", token, str(work)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=work,
    )
    assert done.returncode == 0, (
        f"the reference client's audit failed:\n{done.stderr[-4000:]}\n"
        f"server log:\n{served.log.read_text()[-4000:]}"
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_reference_client_runs_the_whole_audit(
    dyff_python: Path, served: Served, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    seen = _run_audit(dyff_python, served, work)

    assert seen["dataset_created"] == "Created"
    assert seen["dataset"]["status"] == "Ready" and seen["dataset"]["rows"] == ROWS
    assert seen["service"]["status"] == "Ready"

    session = seen["session"]
    assert session["status"] == "Ready" and session["terminate"] == "Terminated"
    for reply in (session["infer"], session["infer_with_create_token"]):
        # the reference client wraps the service's one reply in a list itself
        (completions,) = reply
        assert completions and all(isinstance(c["text"], str) for c in completions)

    evaluation = seen["evaluation"]
    assert evaluation["status"] == "Complete", evaluation["message"]
    assert evaluation["rows"] == ROWS and evaluation["links"]
    assert evaluation["workflow_logs"] == evaluation["id"]

    assert seen["module"]["status"] == "Ready"
    measurement = seen["measurement"]
    assert measurement["status"] == "Complete", measurement["message"]
    assert measurement["rows"] == ROWS
    assert f"measured {ROWS} rows" in measurement["logs"]

    case = seen["safetycase"]
    assert case["status"] == "Complete", case["message"]
    assert "index.html" in case["links"]
    (score,) = case["scores"]
    assert score["name"] == "mean_length" and score["analysis"] == case["id"]
    assert score["quantity"] > 0 and score["text"].startswith("Answers average")
    assert score["metadata"]["refs"]["evaluation"] == evaluation["id"]
    assert case["query_scores"] == case["query_scores_by_method"] == [score["id"]]
    (curve,) = case["curves"]
    assert curve["name"] == "share_below" and curve["points"]["threshold"] == [10.0, 100.0]
    assert case["query_curves"] == [curve["id"]]

    dataset = seen["dataset"]["id"]
    assert seen["labels"] == {"audit.example.org/stage": "final"}
    assert seen["documentation"] == {"title": "Prompts", "summary": "Eight prompts."}
    queries = seen["queries"]
    for name in ("datasets_by_label", "datasets_by_name", "datasets_by_query"):
        assert queries[name] == [dataset], name
    assert queries["evaluations_by_dataset"] == [evaluation["id"]]
    assert queries["evaluations_by_service_name"] == [evaluation["id"]]
    assert queries["measurements_by_method"] == [measurement["id"]]
    assert queries["safetycases_by_method_name"] == [case["id"]]
    assert queries["safetycases_by_input"] == [case["id"]]
    assert queries["generic_get"] == dataset
    assert queries["methods_by_output_kind"] == {
        "Measurement": [measurement["method"]],
        "SafetyCase": [case["method"]],
    }
    family = seen["family"]
    assert family["tags"] == ["v1", "v1.0"]
    assert family["v1"]["entity"] == {"kind": "Dataset", "id": dataset}
    assert family["v1"]["description"] == "Eight prompts." and family["v1"]["name"] == "v1"
    assert family["member"] == ["Dataset", dataset] and family["absent"] is None
    assert seen["deleted"] == {"status": "Deleted", "after": "Deleted"}

    # Assay's own client sees the same platform: the digests the reference client declared
    # in base64 are stored as hex, and the score is the one the reference client read
    with Client(endpoint=f"{served.url}/v0", api_token=served.token(ACCOUNT)) as assay:
        stored = assay.datasets.get(dataset)
        (artifact,) = stored.artifacts
        assert artifact.digest.md5 is not None and len(artifact.digest.md5) == 32
        assert [s.id for s in assay.scores.query(analysis=case["id"])] == [score["id"]]

    log = served.log.read_text()
    assert "Traceback" not in log and "Internal Server Error" not in log, log[-4000:]
