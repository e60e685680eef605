"""schemathesis over ``/openapi.json``: requests generated from the OpenAPI document — valid
ones and broken ones — never get a 5xx, and every answer conforms to the document (a
documented status, its content type and, for JSON, its schema).

Generated ids name nothing, so half of the examples of each operation that takes an ``{id}``
are sent to a real entity of its kind (a small world made through the API first), and create
requests are made for the token's own account: that way generated requests reach the
platform, not only the access checks. The run is bounded (:data:`EXAMPLES` per operation and
mode) and deterministic (hypothesis derandomized, no example database).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient
from tests.server.helpers import Server, build_world

from assay.server import ServerSettings, create_app

pytestmark = pytest.mark.slow

ACCOUNT = "alice"
#: Examples per operation and generation mode (about 110 operations, two modes).
EXAMPLES = 10
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # report every failure as found, unshrunk
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


def _aim(case: Any, world: dict[str, str], real: bool) -> None:
    """Point ``case`` at a real entity (when ``real``) and make a create request for the
    token's account."""
    resource = case.operation.path.split("/")[2]
    if real and "id" in (case.path_parameters or {}) and resource in world:
        case.path_parameters["id"] = world[resource]
    if case.method.upper() == "POST" and isinstance(case.body, dict) and "account" in case.body:
        case.body["account"] = ACCOUNT


def _check_operation(operation: Any, mode: GenerationMode, run: Callable[[Any], None]) -> None:
    @SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode), real=st.booleans())
    def check(case: Any, real: bool) -> None:
        run((case, real))

    check()


def test_generated_requests_get_no_5xx_and_conform(tmp_path: Path) -> None:
    settings_ = ServerSettings(data_dir=tmp_path / "data", executor="threads", shutdown_timeout=10)
    with TestClient(create_app(settings_)) as client:
        server = Server(client, settings_)
        world = build_world(server, server.as_account(ACCOUNT), ACCOUNT)
        token = server.token(ACCOUNT)
    # a fresh app on the same data directory, served in-process by schemathesis itself
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings_))
    headers = {"Authorization": f"Bearer {token}"}
    failures: dict[tuple[str, str], str] = {}
    statuses: set[int] = set()
    operations = 0

    def run(drawn: tuple[Any, bool]) -> None:
        case, real = drawn
        _aim(case, world, real)
        operation = f"{case.method.upper()} {case.operation.path}"
        try:
            response = case.call(headers=headers)
        except Exception as exc:  # in-process, what the app raised comes out (a 500)
            failures.setdefault((operation, "raised"), f"{exc!r}\n{case.as_curl_command()}")
            return
        statuses.add(response.status_code)
        try:
            case.validate_response(response, checks=CHECKS)
        except BaseException as exc:  # schemathesis raises a group of its failures
            if isinstance(exc, KeyboardInterrupt):
                raise
            key = (operation, type(exc).__name__)
            failures.setdefault(key, f"{response.status_code}: {exc}"[:1500])

    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _check_operation(operation, mode, run)
    finally:
        shutdown_lifespans()  # close the app's platform core

    assert operations > 100
    shown = "\n\n".join(f"{op} ({kind}): {text}" for (op, kind), text in sorted(failures.items()))
    assert not failures, f"{len(failures)} operations failed:\n\n{shown}"
    assert {200, 400, 401, 403, 404, 422} <= statuses  # requests reached the routes
