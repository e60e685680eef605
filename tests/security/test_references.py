"""Attacks on ids and paths, against a real ``assay serve`` (multi-user defaults).

bob, with an ordinary token, names alice's entities in his requests — a pipeline step, a
notebook inside her Module — or names paths the platform keeps for itself. Each must be
refused, and a reference to alice's entity must be answered exactly as one to no entity
(``assay.core.references``, ``assay.schema.paths.check_entity_path``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import until
from tests.security.conftest import ALICE, BOB
from tests.server.helpers import (
    Caller,
    module_files,
    module_request,
    notebook_method_request,
    service_request,
)
from tests.server.loopback import Served
from tests.server.test_references import assert_same_answer

from assay.core.kinds import mock_service_request
from assay.local import mocks


def _caller(http: httpx.Client, token: str) -> Caller:
    """The in-process tests' caller, over real HTTP (the same calls as a TestClient's)."""
    return Caller(http, token)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def http(attack_server: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=attack_server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def alices(attack_server: Served, http: httpx.Client) -> dict[str, str]:
    """alice's Module (with a notebook, ``case.ipynb``) and her mock service."""
    alice = _caller(http, attack_server.token(ALICE))
    files = module_files()
    module = alice.create("modules", module_request(ALICE, files))["id"]
    alice.upload("modules", module, files)
    request = mock_service_request(mocks.TextCompletion, account=ALICE, name="private")
    service = alice.create("inferenceservices", request)["id"]
    return {"module": module, "service": service}


@pytest.fixture(scope="module")
def bob(attack_server: Served, http: httpx.Client) -> Caller:
    return _caller(http, attack_server.token(BOB))


@pytest.fixture(scope="module")
def bobs_module(bob: Caller) -> str:
    files = module_files()
    module = bob.create("modules", module_request(BOB, files))["id"]
    bob.upload("modules", module, files)
    return str(module)


def _ready(caller: Caller, resource: str, id: str) -> None:
    ready = lambda: caller.ok("GET", f"/{resource}/{id}")["status"] == "Ready"  # noqa: E731
    until(ready, 60, f"{resource} {id} Ready")


def test_a_pipeline_over_another_accounts_service(bob: Caller, alices: dict[str, str]) -> None:
    """bob deployed a pipeline naming alice's service, ran her model and owned a session of
    it; now the deploy is answered as for a service that does not exist."""

    def deploy(id: str) -> dict[str, Any]:
        return {"definition": {"steps": [{"kind": "model", "service": id}]}}

    answer = assert_same_answer(
        bob, ("POST", "/pipelines/stolen/deploy", deploy), alices["service"]
    )
    assert answer.status_code == 404
    assert bob.get("/pipelines/stolen").status_code == 404
    assert bob.ok("GET", "/inferencesessions") == []
    assert bob.ok("GET", "/inferenceservices") == []


@pytest.mark.parametrize(
    "notebook",
    ["../{alice}/case.ipynb", "/etc/passwd", "../../x.ipynb", "../../.assay/secret.key"],
)
def test_a_notebook_outside_the_module(
    bob: Caller, bobs_module: str, alices: dict[str, str], notebook: str
) -> None:
    """bob's Method named a notebook outside his Module — alice's, or the server's files —
    and his safety case ran it and returned its text."""
    _ready(bob, "modules", bobs_module)
    path = notebook.format(alice=alices["module"])
    response = bob.post("/methods", json=notebook_method_request(BOB, bobs_module, path))
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "implementation.jupyterNotebook.notebookPath" in detail and repr(path) in detail
    assert bob.ok("GET", "/methods") == []


@pytest.mark.parametrize("name", [".assay-tmp-x", ".assay/logs.txt", "pkg/.assay-tmp-0"])
def test_a_module_file_with_a_reserved_name(bob: Caller, name: str) -> None:
    """A Module declaring ``.assay-tmp-x`` (the storage's writes in progress) got 500 on every
    finalize; ``.assay/`` would write over the platform's own files of the entity."""
    files = {name: b"x = 1\n"}
    for resource in ("modules", "datasets"):
        body = {**module_request(BOB, files), "name": "reserved"}
        response = bob.post(f"/{resource}", json=body)
        assert response.status_code == 400, response.text
        detail = response.json()["detail"]
        assert "is reserved" in detail and "'.assay'" in detail and "artifacts[0].path" in detail
        assert bob.ok("GET", f"/{resource}", params={"name": "reserved"}) == []


def test_a_python_service_whose_target_is_a_server_file(
    bob: Caller, bobs_module: str, tmp_path: Path
) -> None:
    """A ``python`` runner's ``target`` of an absolute path made the server read a file of
    its own (``/somewhere/file.py``) to find the class in it."""
    outside = tmp_path / "outside.py"
    outside.write_text("class Model:\n    pass\n")
    target = f"{outside.with_suffix('')}:Model"
    if "." in str(outside.with_suffix("")):
        pytest.skip("the temporary directory has a '.' in its path")
    _ready(bob, "modules", bobs_module)
    for bad in (target, "..pkg:Model", ".assay.x:Model"):
        request = service_request(BOB)
        request["runner"] = {
            "kind": "python",
            "configuration": {"module": bobs_module, "target": bad},
        }
        response = bob.post("/inferenceservices", json=request)
        assert response.status_code == 400, (bad, response.text)
        detail = response.json()["detail"]
        assert "runner.configuration.target" in detail and "not a file inside a Module" in detail
