"""``Client`` and ``LocalPlatform`` are one API: the same groups, method names and
signatures, the same refusals, and an audit script that runs unchanged against both."""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.client.conftest import ALICE
from tests.client.test_audit import write_dataset

import assay.client
from assay import errors
from assay.client import Client
from assay.client._client import GROUPS, LOCAL_ONLY_ATTRIBUTES
from assay.client._groups import LOCAL_ONLY
from assay.local import LocalPlatform, mocks


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalPlatform]:
    with LocalPlatform(storage_root=tmp_path / "local", account=ALICE) as platform:
        yield platform


def _methods(cls: type) -> dict[str, Any]:
    return {
        name: inspect.getattr_static(cls, name)
        for name in dir(cls)
        if not name.startswith("_") and inspect.isfunction(inspect.getattr_static(cls, name))
    }


def test_same_groups_methods_and_signatures(local: LocalPlatform, alice: Client) -> None:
    for group in GROUPS:
        local_methods = _methods(type(getattr(local, group)))
        remote_methods = _methods(type(getattr(alice, group)))
        missing = sorted(set(local_methods) - set(remote_methods) - set(LOCAL_ONLY))
        assert missing == [], f"{group}: {missing}"
        for name, function in local_methods.items():
            if name in LOCAL_ONLY:
                with pytest.raises(AttributeError, match="LocalPlatform only"):
                    getattr(getattr(alice, group), name)
                continue
            expected = list(inspect.signature(function).parameters)
            assert list(inspect.signature(remote_methods[name]).parameters) == expected, (
                f"{group}.{name}"
            )
        assert group == "scores" or callable(remote_methods.get("download")), group
    for name in LOCAL_ONLY_ATTRIBUTES:
        assert hasattr(local, name)
        with pytest.raises(AttributeError, match="belongs to LocalPlatform"):
            getattr(alice, name)
    with pytest.raises(AttributeError, match="its API groups are datasets"):
        alice.platform_pipelines  # noqa: B018


def _refusal(call: Any) -> tuple[type, str]:
    with pytest.raises(errors.AssayError) as info:
        call()
    return type(info.value), str(info.value)


def test_same_refusals(local: LocalPlatform, alice: Client, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    calls = [
        lambda p: p.datasets.create({"account": ALICE, "name": "x"}),
        lambda p: p.methods.create({"account": "not valid!", "name": "m"}),
        lambda p: p.datasets.create_arrow_dataset(tmp_path / "empty", account=ALICE, name="d"),
        lambda p: p.datasets.create_arrow_dataset(tmp_path / "none", account=ALICE, name="d"),
        lambda p: p.modules.create_package(tmp_path / "empty", account=ALICE, name="m"),
        lambda p: p.datasets.label("0" * 32, {"assay.io/reserved": "x"}),
        lambda p: p.datasets.edit_documentation("0" * 32, title="t" * 141),
        lambda p: p.datasets.edit_documentation("0" * 32, {"title": "t"}, summary="s"),
        lambda p: p.reports.create({"account": ALICE, "rubric": "x.Rubric"}),
    ]
    for call in calls:
        assert _refusal(lambda call=call: call(alice)) == _refusal(lambda call=call: call(local))
    # refused by the server, with the class LocalPlatform raises
    missing = "0" * 32
    for group in ("datasets", "evaluations", "safetycases"):
        # get answers None on both (the reference's get); require raises the same class
        assert getattr(alice, group).get(missing) is None
        assert getattr(local, group).get(missing) is None
        remote = _refusal(lambda group=group: getattr(alice, group).require(missing))
        assert remote[0] is _refusal(lambda group=group: getattr(local, group).require(missing))[0]
        assert missing in remote[1]
    assert _refusal(lambda: alice.datasets.query(colour="red"))[0] is errors.ValidationError
    assert _refusal(lambda: local.datasets.query(colour="red"))[0] is errors.ValidationError


def _audit(platform: Any, data: Path) -> dict[str, Any]:
    """An audit script written once, run against either platform."""
    dataset = platform.datasets.create_arrow_dataset(data, account=ALICE, name="prompts")
    dataset = platform.datasets.upload_arrow_dataset(dataset, data)
    service = platform.inferenceservices.create_mock(
        mocks.TextCompletion, account=ALICE, kwargs={"seed": 3}
    )
    evaluation = platform.evaluations.create(
        {
            "account": ALICE,
            "dataset": dataset.id,
            "inferenceSession": {"inferenceService": service.id},
        }
    )
    evaluation = platform.evaluations.wait(evaluation.id, timeout=60)
    outputs = platform.evaluations.open(evaluation.id).to_table().sort_by("_index_")
    platform.evaluations.label(evaluation.id, {"audit": "parity"})
    return {
        "dataset": (dataset.status, dataset.message),
        "evaluation": (evaluation.status, evaluation.message),
        "responses": outputs["responses"].to_pylist(),
        "labelled": [e.id for e in platform.evaluations.query(labels={"audit": "parity"})],
        "expected": [evaluation.id],
    }


def test_an_audit_script_runs_unchanged(
    local: LocalPlatform, alice: Client, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "data")
    here, there = _audit(local, data), _audit(alice, data)
    assert here["dataset"] == there["dataset"] and here["dataset"][0] == "Ready"
    assert here["evaluation"] == there["evaluation"] and here["evaluation"][0] == "Complete"
    assert here["responses"] == there["responses"]  # seeded mock: the same answers
    assert (here["labelled"], there["labelled"]) == (here["expected"], there["expected"])


def test_public_names() -> None:
    names = assay.client.__all__
    assert names == sorted(names)
    assert all(hasattr(assay.client, name) for name in names)


def test_import_is_light() -> None:
    heavy = ["fastapi", "uvicorn", "jupyter_client", "nbclient", "ipykernel", "sqlalchemy"]
    heavy += ["pyarrow", "assay.server", "assay.core", "assay.local"]
    code = (
        "import sys, time; t = time.perf_counter(); import assay.client; "
        "elapsed = time.perf_counter() - t; "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules)); print(elapsed)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded, elapsed = out.stdout.splitlines()
    assert loaded == ""
    assert float(elapsed) < 2.0  # ~0.15 s on an idle machine: httpx and nothing heavy
