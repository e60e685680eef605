"""Shared fixtures: a fresh embedded platform, and small Parquet data sets on disk."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.local import LocalPlatform

ACCOUNT = "tester"


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[LocalPlatform]:
    # ASSAY_TEST_SANDBOX=1 runs the user code of every test that uses this fixture in the
    # sandbox (LocalPlatform(sandbox=True)): a way to try the whole suite as a server runs it
    sandbox = os.environ.get("ASSAY_TEST_SANDBOX") == "1"
    with LocalPlatform(storage_root=tmp_path / "platform", account=ACCOUNT, sandbox=sandbox) as p:
        yield p


def write_dataset(directory: Path, rows: int = 20, *, parts: int = 1, index: bool = True) -> Path:
    """A text data set of ``rows`` instances in ``parts`` Parquet files."""
    directory.mkdir(parents=True, exist_ok=True)
    per = max(rows // parts, 1)
    for part in range(parts):
        start = part * per
        stop = rows if part == parts - 1 else start + per
        columns: dict[str, pa.Array] = {
            "text": pa.array([f"prompt {i}" for i in range(start, stop)])
        }
        if index:
            columns = {"_index_": pa.array(range(start, stop), pa.int64()), **columns}
        pq.write_table(pa.table(columns), directory / f"part-{part}.parquet")
    return directory


def model_request(name: str = "model", account: str = ACCOUNT) -> dict[str, object]:
    return {
        "account": account,
        "name": name,
        "artifact": {"kind": "Mock"},
        "source": {"kind": "Mock"},
        "resources": {"storage": "1Gi"},
    }


def write_package(directory: Path) -> Path:
    """A small Python package with the clutter a real one has."""
    pkg = directory / "mypkg"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "metrics.py").write_text("def score(args, **inputs):\n    return None\n")
    (pkg / "__pycache__" / "metrics.cpython-311.pyc").write_bytes(b"\0\1")
    (pkg / "notebook.ipynb").write_text("{}")
    (directory / ".git").mkdir()
    (directory / ".git" / "HEAD").write_text("ref")
    (directory / ".env").write_text("SECRET=1")
    (directory / "README.md").write_text("# pkg")
    return directory


def service_request(model_id: str | None = None, account: str = ACCOUNT) -> dict[str, object]:
    from assay.schema.dataschema import DataSchema

    output = DataSchema.from_arrow(pa.schema([("text", pa.string())]))
    request: dict[str, object] = {
        "account": account,
        "name": "service",
        "runner": {
            "kind": "mock",
            "configuration": {"mockType": "assay.local.mocks.TextCompletion"},
            "resources": {"memory": "64Mi"},
        },
        "interface": {"endpoint": "generate", "outputSchema": output.model_dump(by_alias=True)},
    }
    if model_id:
        request["model"] = model_id
    return request


def ready_dataset(platform: LocalPlatform, directory: Path, rows: int = 20) -> str:
    write_dataset(directory, rows)
    dataset = platform.datasets.create_arrow_dataset(directory, account=ACCOUNT, name="data")
    return platform.datasets.upload_arrow_dataset(dataset, directory).id


def evaluation_request(dataset: str, service: str) -> dict[str, object]:
    return {
        "account": ACCOUNT,
        "dataset": dataset,
        "inferenceSession": {"inferenceService": service},
    }


def text_metrics_request(
    account: str, method: str, evaluation: str, dataset: str, reference: str
) -> dict[str, object]:
    """A Measurement of ``builtin.text.METRICS`` (registered as ``method``) over
    ``evaluation``'s answers against ``dataset``'s field ``reference``."""
    return {
        "account": account,
        "method": method,
        "scope": {"evaluation": evaluation},
        "inputs": [
            {"keyword": "evaluation", "entity": evaluation},
            {"keyword": "dataset", "entity": dataset},
        ],
        "arguments": [{"keyword": "reference_field", "value": reference}],
    }


def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """``condition()``'s first true value, polled every 20 ms; the test fails with
    "``what`` within ``timeout`` s" when none comes in time."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        time.sleep(0.02)
