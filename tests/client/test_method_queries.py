"""``Client.methods.query(outputKind=...)`` against a real server."""

from __future__ import annotations

from pathlib import Path

from tests.client.conftest import ALICE
from tests.server.helpers import measurement_method_request, module_files, notebook_method_request

from assay.client import Client


def test_methods_are_queried_by_output_kind(alice: Client, tmp_path: Path) -> None:
    for path, data in module_files().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    module = alice.modules.create_package(tmp_path, account=ALICE, name="audit")
    module = alice.modules.upload_package(module, tmp_path)
    alice.modules.wait(module.id, timeout=60)
    measuring = alice.methods.create(measurement_method_request(ALICE, module.id)).id
    case = alice.methods.create(notebook_method_request(ALICE, module.id)).id
    mine = {measuring, case}

    found = [m.id for m in alice.methods.query(outputKind="SafetyCase") if m.id in mine]
    assert found == [case]
    found = [m.id for m in alice.methods.query(outputKind=["Measurement"]) if m.id in mine]
    assert found == [measuring]
    assert alice.methods.query(outputKind="SafetyCase", id=measuring) == []
