"""Transfers and the smaller calls: the download cache, progress on a terminal, Model volumes,
uploads from byte chunks, paging, entities that wait, and evaluations of a running session."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tests.client.conftest import ALICE
from tests.client.test_audit import (
    md5,
    measurement_method,
    uploaded_dataset,
    write_dataset,
    write_package,
)

from assay import errors
from assay.client import Client, TerminalProgress, TransferProgress
from assay.local import mocks


def test_open_downloads_once_into_the_cache(
    make_client: Callable[..., Client], tmp_path: Path
) -> None:
    transfers: list[TransferProgress] = []
    client = make_client(ALICE, progress=transfers.append)
    dataset = uploaded_dataset(client, tmp_path)
    transfers.clear()
    first = client.datasets.open(dataset.id).to_table()
    downloads = [t for t in transfers if t.direction == "download" and t.finished]
    assert sorted(t.path for t in downloads) == ["part-0.parquet", "part-1.parquet"]
    assert client.datasets.open(dataset.id).to_table().equals(first)
    assert len([t for t in transfers if t.direction == "download" and t.finished]) == 2
    cached = client.cache_dir.rglob("part-0.parquet")
    (path,) = list(cached)
    path.write_bytes(b"changed")  # a damaged cache file is downloaded again
    assert client.datasets.open(dataset.id).to_table().equals(first)
    assert md5(path) == md5(tmp_path / "data" / "part-0.parquet")
    assert client.datasets.data_paths(dataset) == ["part-0.parquet", "part-1.parquet"]


def test_terminal_progress() -> None:
    out = io.StringIO()
    show = TerminalProgress(out, interval=0)
    show(TransferProgress("upload", "e" * 32, "dir/part-0.parquet", 0, 3 << 20))
    show(TransferProgress("upload", "e" * 32, "dir/part-0.parquet", 3 << 20, 3 << 20))
    show(TransferProgress("download", "e" * 32, "x" * 60, 10, None))
    lines = out.getvalue().split("\r")[1:]
    assert lines[0] == "  upload dir/part-0.parquet [....................] 0 B / 3.0 MiB"
    assert lines[1] == "  upload dir/part-0.parquet [####################] 3.0 MiB / 3.0 MiB\n"
    assert lines[2] == "  download ..." + "x" * 37 + " 10 B"


def test_model_volumes_and_uploads_from_chunks(alice: Client, tmp_path: Path) -> None:
    weights = tmp_path / "model"
    (weights / ".git").mkdir(parents=True)
    (weights / ".git" / "HEAD").write_text("ref")
    (weights / "config.json").write_text('{"layers": 2}')
    (weights / "weights.bin").write_bytes(bytes(range(256)) * 100)
    model = alice.models.create_from_volume(weights, account=ALICE, name="tiny")
    assert model.artifact.volume is not None
    assert sorted(f.path for f in model.artifact.volume.files) == ["config.json", "weights.bin"]
    model = alice.models.upload_volume(model, weights)
    assert model.status == "Ready", model.message
    files = alice.models.files_dir(model.id)
    assert (files / "weights.bin").read_bytes() == (weights / "weights.bin").read_bytes()
    assert not (files / ".git").exists()

    module = alice.modules.create_package(write_package(tmp_path / "pkg"), account=ALICE, name="m")
    source = (tmp_path / "pkg" / "lengthaudit" / "__init__.py").read_bytes()
    chunks = iter([source[:10], source[10:]])
    assert alice.modules.put_artifact(module.id, "lengthaudit/__init__.py", chunks) == md5(
        tmp_path / "pkg" / "lengthaudit" / "__init__.py"
    )
    alice.modules.put_artifact(module.id, "case.ipynb", tmp_path / "pkg" / "case.ipynb")
    alice.modules.finalize(module.id)
    assert alice.modules.wait(module.id, timeout=30).status == "Ready"


def test_waiting_entities_and_paging(alice: Client, tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "data")
    dataset = alice.datasets.create_arrow_dataset(directory, account=ALICE, name="pending")
    service = alice.inferenceservices.create_mock(mocks.TextCompletion, account=ALICE)
    evaluation = alice.evaluations.create(
        {
            "account": ALICE,
            "dataset": dataset.id,
            "inferenceSession": {"inferenceService": service.id},
        }
    )
    assert (evaluation.status, evaluation.reason) == ("Created", "UnsatisfiedDependency")
    with pytest.raises(errors.WaitTimeoutError, match=f"Evaluation {evaluation.id} is still"):
        alice.evaluations.wait(evaluation.id, timeout=0.2)
    with pytest.raises(errors.ConflictError, match="wait for it"):
        alice.evaluations.open(evaluation.id)
    with pytest.raises(errors.ConflictError):
        alice.evaluations.download(evaluation.id, tmp_path / "nothing")
    package = write_package(tmp_path / "pkg")
    module = alice.modules.create_package(package, account=ALICE, name="lengthaudit")
    module = alice.modules.upload_package(module, package)
    method = alice.methods.create(measurement_method(module.id))
    measurement = alice.measurements.create(
        {
            "account": ALICE,
            "method": method.id,
            "scope": {"evaluation": evaluation.id},
            "inputs": [{"keyword": "evaluation", "entity": evaluation.id}],
        }
    )
    assert measurement.status == "Created"
    assert alice.measurements.logs(measurement.id) == ""  # nothing printed yet
    assert alice.measurements.query(method=method.id, status="Created") == [measurement]

    first, second, third = (
        alice.families.label(
            alice.families.create({"account": ALICE, "memberKind": "Dataset"}).id, {"page": "x"}
        )
        for _ in range(3)
    )
    page = alice.families.query(labels={"page": "x"}, limit=2)
    assert [f.id for f in page] == [first.id, second.id]
    rest = alice.families.query(labels={"page": "x"}, limit=2, after=page[-1].id)
    assert [f.id for f in rest] == [third.id]
    newest = alice.families.query(labels={"page": "x"}, order="descending", limit=1)
    assert [f.id for f in newest] == [third.id]
    assert alice.families.query(id=[first.id, third.id]) == [first, third]
    assert alice.families.query(id=[]) == []
    with pytest.raises(errors.ValidationError, match="give a string"):
        alice.families.query(name={"nested": "dict"})


def test_evaluation_of_a_running_session(alice: Client, tmp_path: Path) -> None:
    dataset = uploaded_dataset(alice, tmp_path, rows=6)
    service = alice.inferenceservices.create_mock(
        mocks.TextCompletion, account=ALICE, kwargs={"seed": 5}
    )
    session = alice.inferencesessions.create({"account": ALICE, "inferenceService": service.id})
    session_id = session.inferencesession.id
    alice.inferencesessions.wait(session_id, timeout=60)
    evaluation = alice.evaluations.local_evaluation(dataset=dataset.id, inferencesession=session_id)
    done = alice.evaluations.wait(evaluation, timeout=60)
    assert done.status == "Complete", done.message
    files = alice.evaluations.download(evaluation, tmp_path / "out")
    assert sum(pq.read_metadata(p).num_rows for p in files) == 6
    alice.inferencesessions.terminate(session_id)
