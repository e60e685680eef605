"""``GET /methods?outputKind=`` and ``query={"outputKind": ...}``: the nested ``output.kind``."""

from __future__ import annotations

import json

from tests.server.conftest import ALICE
from tests.server.helpers import (
    Caller,
    Server,
    measurement_method_request,
    module_files,
    module_request,
    notebook_method_request,
)


def test_methods_are_queried_by_output_kind(server: Server, alice: Caller, bob: Caller) -> None:
    files = module_files()
    module = alice.create("modules", module_request(ALICE, files))["id"]
    alice.upload("modules", module, files)
    server.wait(module)
    measuring = alice.create("methods", measurement_method_request(ALICE, module))["id"]
    case = alice.create("methods", notebook_method_request(ALICE, module))["id"]

    def ids(caller: Caller, **params: str) -> list[str]:
        return [m["id"] for m in caller.ok("GET", "/methods", params=params)]

    assert ids(alice, outputKind="SafetyCase") == [case]
    assert ids(alice, outputKind="Measurement", id="", name="") == [measuring]
    assert ids(alice, query=json.dumps({"outputKind": ["Measurement", "SafetyCase"]})) == [
        measuring,
        case,
    ]
    assert ids(alice, query=json.dumps({"outputKind": "SafetyCase", "name": "lengths"})) == []
    assert ids(bob, outputKind="SafetyCase") == []  # still only what the token may see
    both = alice.get(
        "/methods", params={"outputKind": "SafetyCase", "query": '{"outputKind": "x"}'}
    )
    assert both.status_code == 422 and "both" in both.json()["detail"]
    # other kinds have no such filter
    response = alice.get("/measurements", params={"outputKind": "Measurement"})
    assert response.status_code == 422 and "outputKind" in response.json()["detail"]
