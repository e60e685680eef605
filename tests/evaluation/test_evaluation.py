"""The evaluation engine end to end: in-process and over HTTP, policies, faults, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from tests.conftest import ACCOUNT, ready_dataset

from assay import errors
from assay.evaluation.parts import Part
from assay.local import LocalPlatform, mocks
from assay.schema import ids
from assay.schema.dataschema import DataSchema
from assay.schema.requests import InferenceSessionCreateRequest
from assay.schema.status import Status

REPO = Path(__file__).resolve().parents[2]

MODELS = """
import os
from assay import errors
from assay.evaluation.parts import Part
from assay.local.mocks import Faulty, TextCompletion


class Echo:
    endpoints = ["echo"]

    def infer(self, endpoint, request):
        if "refuse" in request["text"]:
            raise errors.ValidationError("this service refuses to echo " + request["text"])
        return [{"text": request["text"].upper()}]


class Flaky(Faulty):
    def __init__(self, seed=0):
        super().__init__(
            TextCompletion(seed=1), error_rate=0.05, timeout_rate=0.01, malformed_rate=0.05,
            timeout_seconds=3, seed=seed,
        )
"""


def _interface(endpoint: str = "echo", **extra: Any) -> dict[str, Any]:
    schema = DataSchema.make_output_schema(
        pa.schema([pa.field("text", pa.string(), nullable=False)])
    )
    return {"endpoint": endpoint, "outputSchema": schema.model_dump(by_alias=True), **extra}


@pytest.fixture
def module_id(platform: LocalPlatform, tmp_path: Path) -> str:
    package = tmp_path / "pkg"
    (package / "evalmodels").mkdir(parents=True)
    (package / "evalmodels" / "__init__.py").write_text(MODELS)
    module = platform.modules.create_package(package, account=ACCOUNT, name="models")
    return platform.modules.upload_package(module, package).id


def _python_service(
    platform: LocalPlatform, module_id: str, target: str, endpoint: str, **config: Any
) -> str:
    request = {
        "account": ACCOUNT,
        "name": target,
        "runner": {
            "kind": "python",
            "configuration": {"module": module_id, "target": target, **config},
        },
        "interface": _interface(endpoint),
    }
    return platform.inferenceservices.create(request).id


def _evaluate(platform: LocalPlatform, dataset: str, service: str, **fields: Any) -> Any:
    session = {"inferenceService": service, "replicas": fields.pop("replicas", 1)}
    return platform.evaluations.create(
        {"account": ACCOUNT, "dataset": dataset, "inferenceSession": session, **fields}
    )


def _pairs(platform: LocalPlatform, evaluation_id: str) -> pa.Table:
    return platform.evaluations.open(evaluation_id).to_table(columns=["_index_", "_replication_"])


def _assert_exactly_once(
    platform: LocalPlatform, evaluation_id: str, rows: int, replications: int
) -> None:
    pairs = _pairs(platform, evaluation_id)
    assert pairs.num_rows == rows * replications
    counts = pairs.group_by(["_index_", "_replication_"]).aggregate([([], "count_all")])
    assert counts.num_rows == rows * replications
    assert pc.max(counts["count_all"]).as_py() == 1
    expected = {ids.replication_id(evaluation_id, r) for r in range(replications)}
    assert set(pairs.column("_replication_").to_pylist()) == expected
    integrity = json.loads(
        next(a.value for a in platform.evaluations.get(evaluation_id).annotations)
    )
    assert integrity["ok"] and integrity["answered"] == rows * replications


def test_in_process_mock_evaluation(platform: LocalPlatform, tmp_path: Path) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=250)
    service = platform.inferenceservices.create_mock(
        mocks.TextCompletion, account=ACCOUNT, kwargs={"seed": 4}
    )
    evaluation = _evaluate(platform, dataset, service.id, replications=3, client={"batchSize": 64})
    assert evaluation.status == Status.Complete, evaluation.message
    assert "integrity verified" in (evaluation.message or "")
    _assert_exactly_once(platform, evaluation.id, 250, 3)
    row = platform.evaluations.open(evaluation.id).to_table().slice(0, 1).to_pylist()[0]
    assert [r["_response_index_"] for r in row["responses"]] == [0, 1]
    # the evaluation's own session is stopped afterwards
    (session,) = platform.inferencesessions.query()
    assert session.status == Status.Terminated


@pytest.mark.slow
def test_http_evaluation_batched_over_two_replicas(
    platform: LocalPlatform, module_id: str, tmp_path: Path
) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=500)
    service = _python_service(platform, module_id, "evalmodels:Echo", "echo")
    evaluation = _evaluate(
        platform, dataset, service, replicas=2, workersPerReplica=4, client={"batchSize": 100}
    )
    assert evaluation.status == Status.Complete, evaluation.message
    _assert_exactly_once(platform, evaluation.id, 500, 1)
    table = platform.evaluations.open(evaluation.id).to_table()
    first = {r["_index_"]: r["responses"][0]["text"] for r in table.to_pylist()}
    assert first[7] == "PROMPT 7"


@pytest.mark.slow
def test_faults_end_complete_with_every_instance(
    platform: LocalPlatform, module_id: str, tmp_path: Path
) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=300)
    service = _python_service(platform, module_id, "evalmodels:Flaky", "generate", threads=8)
    evaluation = _evaluate(
        platform,
        dataset,
        service,
        workersPerReplica=8,
        client={
            "requestTimeoutSeconds": 1,
            "transientErrorRetryDelaySeconds": 1,
            "requestBatchSize": 1,
        },
    )
    assert evaluation.status == Status.Complete, evaluation.message
    _assert_exactly_once(platform, evaluation.id, 300, 1)
    responses = platform.evaluations.open(evaluation.id).to_table().column("responses").to_pylist()
    assert all(len(r) == 2 for r in responses)


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["Abort", "Skip"])
def test_bad_request_policy(
    platform: LocalPlatform, module_id: str, tmp_path: Path, policy: str
) -> None:
    import pyarrow.parquet as pq

    directory = tmp_path / "data"
    directory.mkdir()
    texts = [f"refuse {i}" if i % 10 == 3 else f"prompt {i}" for i in range(40)]
    pq.write_table(
        pa.table({"_index_": pa.array(range(40), pa.int64()), "text": texts}),
        directory / "p.parquet",
    )
    dataset = platform.datasets.upload_arrow_dataset(
        platform.datasets.create_arrow_dataset(directory, account=ACCOUNT, name="d"), directory
    ).id
    service = _python_service(platform, module_id, "evalmodels:Echo", "echo")
    evaluation = _evaluate(platform, dataset, service, client={"badRequestPolicy": policy})
    if policy == "Abort":
        assert (evaluation.status, evaluation.reason) == (Status.Failed, "Incomplete")
        assert "4 instances failed" in (evaluation.message or "") and "refuses" in (
            evaluation.message or ""
        )
        return
    assert evaluation.status == Status.Complete, evaluation.message
    assert "4 skipped" in (evaluation.message or "")
    _assert_exactly_once(platform, evaluation.id, 40, 1)
    table = platform.evaluations.open(evaluation.id).to_table().to_pylist()
    assert sorted(r["_index_"] for r in table if not r["responses"]) == [3, 13, 23, 33]


def test_data_that_does_not_fit_the_input_pipeline_fails_before_sending(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=5)
    pipeline = [{"kind": "TransformJSON", "configuration": {"text": "$.question"}}]
    service = platform.inferenceservices.create(
        {
            "account": ACCOUNT,
            "name": "q",
            "runner": {
                "kind": "mock",
                "configuration": {"mockType": "assay.local.mocks.TextCompletion"},
            },
            "interface": _interface("generate", inputPipeline=pipeline),
        }
    )
    evaluation = _evaluate(platform, dataset, service.id)
    assert evaluation.status == Status.Failed
    assert "no request was sent" in (evaluation.message or "") and "question" in (
        evaluation.message or ""
    )


def test_a_terminated_session_fails_the_evaluation(platform: LocalPlatform, tmp_path: Path) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=5)
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    session = platform.inferencesessions.create(
        InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service.id)
    ).inferencesession
    platform.inferencesessions.terminate(session.id)
    evaluation = platform.evaluations.create(
        {"account": ACCOUNT, "dataset": dataset, "inferenceSessionReference": session.id}
    )
    assert evaluation.status == Status.Failed
    assert "Terminated" in (evaluation.message or "")


def test_running_session_reference_is_used_and_kept(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=20)
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    session = platform.inferencesessions.create(
        InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service.id)
    ).inferencesession
    evaluation = platform.evaluations.create(
        {"account": ACCOUNT, "dataset": dataset, "inferenceSessionReference": session.id}
    )
    assert evaluation.status == Status.Complete, evaluation.message
    assert platform.inferencesessions.get(session.id).status == Status.Ready


def test_bad_create_requests_are_refused(platform: LocalPlatform, tmp_path: Path) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=5)
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    with pytest.raises(errors.ValidationError) as info:
        _evaluate(platform, dataset, service.id, replications=0)
    assert "replications" in str(info.value)
    with pytest.raises(errors.NotFoundError):
        _evaluate(platform, "0" * 32, service.id)
    assert platform.evaluations.query() == []


@pytest.mark.slow
def test_kill_and_resume_answers_every_instance_exactly_once(tmp_path: Path) -> None:
    root = tmp_path / "state"
    with LocalPlatform(storage_root=root, account=ACCOUNT) as platform:
        dataset = ready_dataset(platform, tmp_path / "data", rows=2000)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                from assay.evaluation import parts
                from assay.local import LocalPlatform, mocks
                parts.IN_PROCESS_PART_ROWS = 150  # parts of 1 to 3 batches; the resumed run's larger
                with LocalPlatform(storage_root={str(root)!r}, account={ACCOUNT!r}) as p:
                    service = p.inferenceservices.create_mock(
                        mocks.Faulty, account={ACCOUNT!r}, kwargs={{"latency": 0.002}}
                    )
                    p.evaluations.create({{
                        "account": {ACCOUNT!r}, "dataset": {dataset!r}, "replications": 2,
                        "inferenceSession": {{"inferenceService": service.id}},
                        "client": {{"batchSize": 50}},
                    }})
                """
            ),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    data_dir = None
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            found = [p for p in root.glob("*/data") if p.is_dir()]
            if found and len(list(found[0].glob("*.parquet"))) >= 5:
                data_dir = found[0]
                break
            assert child.poll() is None, child.communicate()[1]
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    assert data_dir is not None, "the evaluation never wrote a part"
    with LocalPlatform(storage_root=root) as platform:
        (evaluation,) = platform.evaluations.query()
        assert evaluation.status == Status.Admitted
        written = len(list(data_dir.glob("*.parquet")))
        assert 5 <= written < 80
        assert platform.resume() == [evaluation.id]
        done = platform.evaluations.get(evaluation.id)
        assert done.status == Status.Complete, done.message
        _assert_exactly_once(platform, evaluation.id, 2000, 2)
    # Parts of several sizes (the killed run's and the resumed run's), which between them
    # hold each of the 2 x 40 batches once.
    names = [Part.parse(path.name) for path in data_dir.glob("*.parquet")]
    written_parts = [part for part in names if part is not None]
    assert len(written_parts) == len(names) and {part.count for part in written_parts} != {1}
    batches = [b for part in written_parts for b in part.batches()]
    assert sorted(batches) == [(r, 0, b) for r in range(2) for b in range(40)]
