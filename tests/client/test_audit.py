"""The whole audit through ``Client`` over real HTTP: a data set uploaded and opened, a mock
service and a session (token, ready, infer, session client), an evaluation, a module, a
Python-function measurement with its logs, a notebook safety case with scores, curves and its
document, labels, documentation, downloads and delete."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import nbformat
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.client.conftest import ALICE

from assay import errors
from assay.client import Client, TransferProgress
from assay.local import mocks
from assay.schema.dataschema import DataSchema
from assay.schema.platform import Dataset, Evaluation, InferenceSessionAndToken, Score

ROWS = 12

MEASURE = '''
import pyarrow as pa
import pyarrow.compute as pc


def lengths(args, *, evaluation):
    """Characters in the first response to each instance."""
    table = evaluation.to_table()
    text = pc.struct_field(pc.list_element(table["responses"], 0), "text")
    print("measured", table.num_rows, "rows")
    return pa.table({
        "_index_": table["_index_"],
        "_replication_": table["_replication_"],
        "length": pc.utf8_length(text).cast(pa.int64()),
    })
'''

CELLS = [
    """\
from assay.analysis import AnalysisContext
import pyarrow.compute as pc

ctx = AnalysisContext()
lengths = ctx.inputs("lengths").to_table()["length"]
mean = pc.mean(lengths).as_py()
""",
    """\
ctx.TitleCard(headline="Length audit through the client", author="The client tests",
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

LENGTHS = pa.schema(
    [("_index_", pa.int64()), ("_replication_", pa.string()), ("length", pa.int64())]
)


def write_dataset(directory: Path, rows: int = ROWS) -> Path:
    directory.mkdir(parents=True)
    table = pa.table(
        {
            "_index_": pa.array(range(rows), pa.int64()),
            "text": pa.array([f"prompt {i}" for i in range(rows)]),
        }
    )
    pq.write_table(table.slice(0, rows // 2), directory / "part-0.parquet")
    pq.write_table(table.slice(rows // 2), directory / "part-1.parquet")
    return directory


def write_package(directory: Path) -> Path:
    (directory / "lengthaudit" / "__pycache__").mkdir(parents=True)
    (directory / "lengthaudit" / "__init__.py").write_text(MEASURE)
    (directory / "lengthaudit" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Length audit")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in CELLS]
    nbformat.write(nb, directory / "case.ipynb")
    return directory


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def measurement_method(module: str) -> dict[str, Any]:
    """A Python-function Method: the length of each first response."""
    return {
        "account": ALICE,
        "name": "lengths",
        "scope": "Evaluation",
        "implementation": {
            "kind": "PythonFunction",
            "pythonFunction": {"fullyQualifiedName": "lengthaudit.lengths"},
        },
        "inputs": [{"kind": "Evaluation", "keyword": "evaluation"}],
        "output": {
            "kind": "Measurement",
            "measurement": {
                "name": "lengths",
                "level": "Instance",
                "schema": DataSchema.from_arrow(LENGTHS).model_dump(by_alias=True),
            },
        },
        "modules": [module],
    }


def uploaded_dataset(client: Client, tmp_path: Path, rows: int = ROWS) -> Dataset:
    directory = write_dataset(tmp_path / "data", rows)
    dataset = client.datasets.create_arrow_dataset(directory, account=ALICE, name="prompts")
    return client.datasets.upload_arrow_dataset(dataset, directory)


def test_the_audit_through_the_client(
    make_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    transfers: list[TransferProgress] = []
    client: Client = make_client(ALICE, progress=transfers.append)
    assert client.account == ALICE

    # -- a data set: declared with its digests, uploaded, ingested, opened ----------------
    dataset = uploaded_dataset(client, tmp_path)
    assert dataset.status == "Ready", dataset.message
    assert [a.path for a in dataset.artifacts] == ["part-0.parquet", "part-1.parquet"]
    assert {t.direction for t in transfers} == {"upload"}
    assert [t.path for t in transfers if t.finished] == ["part-0.parquet", "part-1.parquet"]
    table = client.datasets.open(dataset.id).to_table()
    assert sorted(table["_index_"].to_pylist()) == list(range(ROWS))
    assert client.datasets.get(dataset.id) == dataset
    assert any(t.direction == "download" for t in transfers)

    # -- a service and a session: token, ready, raw infer, the session client ------------
    service = client.inferenceservices.create_mock(
        mocks.TextCompletion, account=ALICE, kwargs={"seed": 1}
    )
    created = client.inferencesessions.create({"account": ALICE, "inferenceService": service.id})
    assert isinstance(created, InferenceSessionAndToken)
    session = created.inferencesession.id
    assert client.inferencesessions.wait(session, timeout=60).status == "Ready"
    assert client.inferencesessions.ready(session) is True
    replies = client.inferencesessions.infer(session, "generate", {"text": "hello"})
    assert len(replies) == 2 and all(r["text"].startswith("hello") for r in replies)
    with client.inferencesessions.client(session, created.token) as session_client:
        answer = session_client.infer({"text": "hello"})
    assert answer == replies  # seeded: the same answer through both paths
    other_token = client.inferencesessions.token(session)
    with client.inferencesessions.client(session, other_token) as session_client:
        assert session_client.infer({"text": "again"})[0]["text"].startswith("again")
    terminated = client.inferencesessions.terminate(session)
    assert terminated.status == "Terminated"
    assert client.inferencesessions.ready(session) is False

    # -- an evaluation, its data opened and downloaded -----------------------------------
    evaluation = client.evaluations.create(
        {
            "account": ALICE,
            "dataset": dataset.id,
            "inferenceSession": {"inferenceService": service.id},
        }
    )
    assert isinstance(evaluation, Evaluation)
    finished = client.evaluations.wait(evaluation.id, timeout=60)
    assert finished.status == "Complete", finished.message
    outputs = client.evaluations.open(evaluation.id).to_table()
    assert outputs.num_rows == ROWS and "responses" in outputs.column_names
    downloaded = client.evaluations.download(evaluation.id, tmp_path / "outputs")
    assert downloaded and all(p.is_file() and p.suffix == ".parquet" for p in downloaded)
    assert sum(pq.read_metadata(p).num_rows for p in downloaded) == ROWS
    assert not list((tmp_path / "outputs").rglob("*.part"))
    assert client.evaluations.query(dataset=dataset.id) == [finished]

    # -- a module (caches left out) and a Python-function measurement with its logs ---------
    package = write_package(tmp_path / "pkg")
    module = client.modules.create_package(package, account=ALICE, name="lengthaudit")
    assert sorted(a.path for a in module.artifacts) == ["case.ipynb", "lengthaudit/__init__.py"]
    module = client.modules.upload_package(module, package)
    assert module.status == "Ready", module.message
    files = client.modules.download(module.id, tmp_path / "module")
    assert {p.relative_to(tmp_path / "module").as_posix(): md5(p) for p in files} == {
        a.path: md5(package / a.path) for a in module.artifacts
    }
    method = client.methods.create(measurement_method(module.id))
    measurement = client.measurements.create(
        {
            "account": ALICE,
            "method": method.id,
            "scope": {"evaluation": evaluation.id},
            "inputs": [{"keyword": "evaluation", "entity": evaluation.id}],
        }
    )
    done = client.measurements.wait(measurement.id, timeout=60)
    assert done.status == "Complete", done.message
    assert "measured 12 rows" in client.measurements.logs(measurement.id)
    lengths = client.measurements.open(measurement.id).to_table()["length"].to_pylist()
    assert len(lengths) == ROWS

    # -- a notebook safety case: scores, curves, document -----------------------------------
    notebook_method = client.methods.create(
        {
            "account": ALICE,
            "name": "case",
            "scope": "Evaluation",
            "implementation": {
                "kind": "JupyterNotebook",
                "jupyterNotebook": {"notebookModule": module.id, "notebookPath": "case.ipynb"},
            },
            "inputs": [{"kind": "Measurement", "keyword": "lengths"}],
            "output": {"kind": "SafetyCase", "safetyCase": {"name": "Length audit"}},
            "scores": SCORES,
            "modules": [module.id],
        }
    )
    case = client.safetycases.create(
        {
            "account": ALICE,
            "method": notebook_method.id,
            "scope": {"evaluation": evaluation.id},
            "inputs": [{"keyword": "lengths", "entity": measurement.id}],
        }
    )
    done_case = client.safetycases.wait(case.id, timeout=120)
    assert done_case.status == "Complete", done_case.message
    (score,) = client.safetycases.scores(case.id)
    assert isinstance(score, Score) and score.name == "mean_length"
    assert score.quantity == pytest.approx(sum(lengths) / len(lengths))
    assert client.scores.get(analysis=case.id) == [score]
    assert client.scores.query(method=notebook_method.id, name="mean_length") == [score]
    assert client.scores.query(name=["mean_length", "other"], evaluation=evaluation.id) == [score]
    assert client.scores.query(name=[]) == []
    # what it stands on: the data set and both methods, by digest (never on the wire)
    assert score.provenance is not None and score.provenance["analysis"] == case.id
    assert set(score.provenance["datasets"]) == {dataset.id}
    assert set(score.provenance["methods"]) == {notebook_method.id, measurement.method.id}
    assert client.verify(case.id).ok
    (curve,) = client.safetycases.curves(case.id)
    assert curve.points["threshold"] == [10.0, 100.0]
    assert client.scores.curves(analysis=case.id) == [curve]
    html = client.safetycases.document(case.id)
    assert "Length audit through the client" in html
    assert client.safetycases.document_path(case.id).read_text(encoding="utf-8") == html
    assert client.safetycases.query(method=notebook_method.id) == [done_case]

    # -- labels, documentation, delete ----------------------------------------------------
    labelled = client.datasets.label(dataset.id, {"team": "red", "stage": "draft"})
    assert labelled.labels == {"team": "red", "stage": "draft"}
    assert client.datasets.query(labels={"team": "red"}) == [labelled]
    assert client.datasets.query(labels={"team": "blue"}) == []
    assert client.datasets.label(dataset.id, {"stage": None}).labels == {"team": "red"}
    edited = client.datasets.edit_documentation(dataset.id, title="Prompts", summary="Twelve.")
    assert (edited.entity, edited.title, edited.summary) == (dataset.id, "Prompts", "Twelve.")
    assert client.datasets.edit_documentation(dataset.id, {"summary": None}).summary is None
    assert client.datasets.documentation(dataset.id).title == "Prompts"
    client.evaluations.delete(evaluation.id)
    assert client.evaluations.get(evaluation.id).status == "Deleted"
    assert client.evaluations.query(id=[evaluation.id], status="Complete") == []
    assert capsys.readouterr().err == ""  # progress went to the callback, not the terminal


def test_upload_failures_leave_the_entity_waiting(alice: Client, tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "data")
    dataset = alice.datasets.create_arrow_dataset(directory, account=ALICE, name="changed")
    assert (dataset.status, dataset.reason) == ("Created", "WaitingForUpload")
    # a file that changed since it was declared: the server refuses it, nothing is stored
    pq.write_table(pa.table({"_index_": pa.array([7], pa.int64())}), directory / "part-0.parquet")
    with pytest.raises(errors.ValidationError, match="md5"):
        alice.datasets.upload_arrow_dataset(dataset, directory)
    with pytest.raises(errors.ValidationError, match="not uploaded"):
        alice.datasets.finalize(dataset.id)
    assert alice.datasets.get(dataset.id).reason == "WaitingForUpload"
    with pytest.raises(errors.ConflictError, match="wait for it"):
        alice.datasets.open(dataset.id)
    with pytest.raises(errors.ValidationError, match="not one of its files"):
        alice.datasets.put_artifact(dataset.id, "other.parquet", b"x")
    # the original data, given as bytes and as a file object, then finalized
    write_dataset(tmp_path / "again")
    for name in ("part-0.parquet", "part-1.parquet"):
        with (tmp_path / "again" / name).open("rb") as f:
            alice.datasets.put_artifact(dataset.id, name, f)
    assert alice.datasets.finalize(dataset.id).reason != "WaitingForUpload"
    assert alice.datasets.wait(dataset.id, timeout=30).status == "Ready"
    with pytest.raises(errors.ConflictError, match="not waiting for an upload"):
        alice.datasets.put_artifact(dataset.id, "part-0.parquet", b"x")
