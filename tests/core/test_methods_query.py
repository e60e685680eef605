"""``methods.query(outputKind=...)``: a filter on the nested field ``output.kind``."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import ACCOUNT
from tests.server.helpers import measurement_method_request, module_files, notebook_method_request

from assay import errors
from assay.local import LocalPlatform


def _module(platform: LocalPlatform, directory: Path) -> str:
    for path, data in module_files().items():
        (directory / path).parent.mkdir(parents=True, exist_ok=True)
        (directory / path).write_bytes(data)
    module = platform.modules.create_package(directory, account=ACCOUNT, name="audit")
    return platform.modules.upload_package(module, directory).id


def test_methods_are_found_by_output_kind(platform: LocalPlatform, tmp_path: Path) -> None:
    module = _module(platform, tmp_path / "module")
    measuring = platform.methods.create(measurement_method_request(ACCOUNT, module)).id
    case = platform.methods.create(notebook_method_request(ACCOUNT, module)).id
    second = platform.methods.create(measurement_method_request(ACCOUNT, module)).id
    methods = platform.methods

    assert [m.id for m in methods.query(outputKind="Measurement")] == [measuring, second]
    assert [m.id for m in methods.query(outputKind="SafetyCase")] == [case]
    both = methods.query(outputKind=["SafetyCase", "Measurement"], order="descending")
    assert [m.id for m in both] == [second, case, measuring]
    assert methods.query(outputKind="Report") == []
    # with the other filters and paging
    page = methods.query(outputKind="Measurement", limit=1)
    assert [m.id for m in page] == [measuring]
    rest = methods.query(outputKind="Measurement", after=page[0].id)
    assert [m.id for m in rest] == [second]
    assert methods.query(outputKind="SafetyCase", name="lengths") == []
    assert [m.id for m in methods.query(outputKind="SafetyCase", modules=module)] == [case]
    # only Methods have it
    with pytest.raises(errors.ValidationError, match="unknown filter 'outputKind'"):
        platform.measurements.query(outputKind="Measurement")
