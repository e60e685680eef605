"""A notebook Method's ``notebookPath`` is checked on disk where the notebook is read — when
the Method is created and again when a safety case runs it — so a symbolic link, or a Method
that was never checked (imported, or stored by an older version), cannot run a notebook from
outside its Module (``assay.schema.paths.check_entity_path``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.conftest import ACCOUNT

from assay import errors
from assay.local import LocalPlatform, mocks
from assay.schema.status import Status

NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def _module(platform: LocalPlatform, directory: Path, name: str) -> str:
    directory.mkdir()
    (directory / "case.ipynb").write_text(NOTEBOOK)
    module = platform.modules.create_package(directory, account=ACCOUNT, name=name)
    return platform.modules.upload_package(module, directory).id


def _method(module: str, notebook: str) -> dict[str, Any]:
    return {
        "account": ACCOUNT,
        "name": "case",
        "scope": "InferenceService",
        "implementation": {
            "kind": "JupyterNotebook",
            "jupyterNotebook": {"notebookModule": module, "notebookPath": notebook},
        },
        "inputs": [],
        "output": {"kind": "SafetyCase", "safetyCase": {"name": "case"}},
        "modules": [module],
    }


@pytest.fixture
def modules(platform: LocalPlatform, tmp_path: Path) -> tuple[str, str]:
    """Two Modules with a notebook each: "mine" and "theirs"."""
    return _module(platform, tmp_path / "mine", "mine"), _module(
        platform, tmp_path / "theirs", "theirs"
    )


def test_a_link_out_of_the_module_is_refused_when_the_method_is_made(
    platform: LocalPlatform, modules: tuple[str, str]
) -> None:
    mine, theirs = modules
    link = platform.entity_path(mine) / "stolen.ipynb"
    link.symlink_to(platform.entity_path(theirs) / "case.ipynb")
    with pytest.raises(errors.ValidationError, match="leads outside its entity's directory"):
        platform.methods.create(_method(mine, "stolen.ipynb"))
    with pytest.raises(errors.ValidationError, match=r"'\.\.'"):
        platform.methods.create(_method(mine, f"../{theirs}/case.ipynb"))
    assert platform.methods.create(_method(mine, "case.ipynb")).status == Status.Ready


def test_an_unchecked_method_cannot_run_a_notebook_outside_its_module(
    platform: LocalPlatform, modules: tuple[str, str]
) -> None:
    mine, theirs = modules
    made = platform.methods.create(_method(mine, "case.ipynb"))
    # a Method record that no create checked: imported as it is
    doc = made.to_wire()
    doc["id"] = "f" * 32
    doc["implementation"]["jupyterNotebook"]["notebookPath"] = f"../{theirs}/case.ipynb"
    method = platform.methods._import_record(doc)
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    case = platform.safetycases.create(
        {"account": ACCOUNT, "method": method.id, "scope": {"inferenceService": service.id}}
    )
    case = platform.safetycases.wait(case.id, timeout=60)
    assert case.status == Status.Failed
    assert "notebookPath" in (case.message or "") and "'..'" in (case.message or "")
