"""``account`` is optional wherever a ``Client`` creates something: it is the token's account
(its subject, ``Account/<name>``), filled in by the client before the request is validated
and sent; over raw HTTP the server fills it in the same way. An explicit account still wins,
and is still checked against the token's grants (``docs/design/client.md``, "The default
account")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.client.conftest import ALICE, LiveServer

from assay import errors
from assay.analysis import builtin
from assay.client import Client
from assay.local import mocks
from assay.schema.requests import InferenceSessionCreateRequest

TEAM = "team"
#: alice's token that may also write the account ``team``.
BOTH = [{"resources": ["*"], "functions": ["*"], "accounts": [ALICE, TEAM]}]
ROWS = 4


def _dataset_directory(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "_index_": pa.array(range(ROWS), pa.int64()),
            "text": pa.array([f"prompt {i}" for i in range(ROWS)]),
        }
    )
    pq.write_table(table, root / "part-0.parquet")
    return root


def _package(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    return root


@pytest.fixture
def alice(make_client: Callable[..., Client], live_server: LiveServer) -> Client:
    """alice's client, whose token also allows the account ``team``."""
    return make_client(token=live_server.token(ALICE, BOTH))


@pytest.mark.parametrize(("account", "expected"), [(None, ALICE), (TEAM, TEAM)])
def test_create_arrow_dataset(
    alice: Client, tmp_path: Path, account: str | None, expected: str
) -> None:
    directory = _dataset_directory(tmp_path / "data")
    dataset = alice.datasets.create_arrow_dataset(directory, name="data", account=account)
    assert dataset.account == expected
    dataset = alice.datasets.upload_arrow_dataset(dataset, directory)
    assert (dataset.account, dataset.status) == (expected, "Ready")


@pytest.mark.parametrize(("account", "expected"), [(None, ALICE), (TEAM, TEAM)])
def test_create_mock(alice: Client, account: str | None, expected: str) -> None:
    service = alice.inferenceservices.create_mock(mocks.TextCompletion, account=account)
    assert service.account == expected


@pytest.mark.parametrize(("account", "expected"), [(None, ALICE), (TEAM, TEAM)])
def test_create_package(alice: Client, tmp_path: Path, account: str | None, expected: str) -> None:
    package = _package(tmp_path / "package")
    module = alice.modules.create_package(package, name="pkg", account=account)
    assert module.account == expected
    assert alice.modules.upload_package(module, package).account == expected


@pytest.mark.parametrize(("account", "expected"), [(None, ALICE), (TEAM, TEAM)])
def test_create_from_volume(
    alice: Client, tmp_path: Path, account: str | None, expected: str
) -> None:
    directory = tmp_path / "weights"
    directory.mkdir()
    (directory / "config.json").write_text("{}")
    model = alice.models.create_from_volume(directory, name="weights", account=account)
    assert model.account == expected


def test_request_dicts_without_account_are_the_tokens(alice: Client, tmp_path: Path) -> None:
    """A whole audit of request dicts without ``account`` (or with ``account: None``)."""
    service = alice.inferenceservices.create_mock(mocks.TextCompletion)
    made = alice.inferencesessions.create({"inferenceService": service.id, "account": None})
    assert made.inferencesession.account == ALICE
    alice.inferencesessions.terminate(made.inferencesession.id)

    directory = _dataset_directory(tmp_path / "data")
    dataset = alice.datasets.create_arrow_dataset(directory, name="data")
    alice.datasets.upload_arrow_dataset(dataset, directory)
    evaluation = alice.evaluations.create(
        {"dataset": dataset.id, "inferenceSession": {"inferenceService": service.id}}
    )
    assert evaluation.account == ALICE
    evaluation = alice.evaluations.wait(evaluation.id, timeout=120)
    assert evaluation.status == "Complete", evaluation.message

    method = builtin.text.LENGTH.register(alice)
    assert method.account == ALICE
    measurement = alice.measurements.create(
        {
            "method": method.id,
            "scope": {"evaluation": evaluation.id},
            "inputs": [{"keyword": "evaluation", "entity": evaluation.id}],
        }
    )
    assert measurement.account == ALICE
    assert alice.families.create({"memberKind": "Dataset"}).account == ALICE


def test_an_explicit_account_wins(alice: Client) -> None:
    service = alice.inferenceservices.create_mock(mocks.TextCompletion, account=TEAM)
    made = alice.inferencesessions.create(
        InferenceSessionCreateRequest(account=TEAM, inferenceService=service.id)
    )
    assert made.inferencesession.account == TEAM
    alice.inferencesessions.terminate(made.inferencesession.id)
    assert builtin.text.LENGTH.register(alice, account=TEAM).account == TEAM


def test_an_account_the_token_may_not_write_is_refused(
    make_client: Callable[..., Client],
) -> None:
    alice = make_client(ALICE)  # an ordinary token: alice's own entities only
    with pytest.raises(errors.PermissionDeniedError, match="'team'"):
        alice.inferenceservices.create_mock(mocks.TextCompletion, account=TEAM)
    assert alice.inferenceservices.query(account=TEAM) == []


def test_a_session_token_has_no_account_to_default_to(
    alice: Client, make_client: Callable[..., Client]
) -> None:
    service = alice.inferenceservices.create_mock(mocks.TextCompletion)
    made = alice.inferencesessions.create({"inferenceService": service.id})
    try:
        session_client = make_client(token=made.token)
        with pytest.raises(errors.ValidationError) as info:
            session_client.inferenceservices.create_mock(mocks.TextCompletion)
        assert info.value.field == "account"
        message = str(info.value)
        assert "InferenceService create request: account is missing" in message
        assert f"InferenceSession/{made.inferencesession.id}" in message
        assert "account='NAME'" in message and "assay token create --account" in message
    finally:
        alice.inferencesessions.terminate(made.inferencesession.id)


# -- the server, over raw HTTP ----------------------------------------------------------------


def _model(**fields: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "name": "raw",
        "artifact": {"kind": "Mock"},
        "source": {"kind": "Mock"},
        "resources": {"storage": "1Gi"},
    }
    return {**request, **fields}


def _post(live_server: LiveServer, token: str | None, body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{live_server.url}/v0/models", json=body, headers=headers, timeout=30)


def test_the_server_fills_in_the_tokens_account(live_server: LiveServer) -> None:
    token = live_server.token(ALICE, BOTH)
    for body in (_model(), _model(account=None)):
        response = _post(live_server, token, body)
        assert response.status_code == 201, response.text
        assert response.json()["account"] == ALICE
    response = _post(live_server, token, _model(account=TEAM))
    assert response.status_code == 201 and response.json()["account"] == TEAM


def test_the_server_fills_in_nothing_without_an_account_token(
    live_server: LiveServer, alice: Client
) -> None:
    response = _post(live_server, None, _model())
    assert response.status_code == 401, response.text
    response = _post(live_server, "not-a-token", _model())
    assert response.status_code == 401, response.text
    service = alice.inferenceservices.create_mock(mocks.TextCompletion)
    made = alice.inferencesessions.create({"inferenceService": service.id})
    try:
        response = _post(live_server, made.token, _model())
        assert response.status_code == 422, response.text
        assert "account: required field is missing" in response.json()["detail"]
    finally:
        alice.inferencesessions.terminate(made.inferencesession.id)
    # bodies that are not JSON objects are answered as before
    response = _post(live_server, live_server.token(ALICE), [1, 2])
    assert response.status_code == 400, response.text


def test_the_openapi_document_keeps_account_required(live_server: LiveServer) -> None:
    spec = httpx.get(f"{live_server.url}/openapi.json", timeout=30).json()
    schemas = spec["components"]["schemas"]
    for name in ("DatasetCreateRequest", "ModelCreateRequest", "InferenceSessionCreateRequest"):
        assert "account" in schemas[name]["required"], name
    create = spec["paths"]["/v0/models"]["post"]
    assert "token's account" in create["description"]
