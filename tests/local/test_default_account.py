"""``account`` is optional wherever a user creates something on a ``LocalPlatform``: it is the
platform's own (``LocalPlatform(account=...)``, else ``ASSAY_ACCOUNT``, else ``local``); an
explicit account still wins (``docs/design/client.md``, "The default account")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import model_request, service_request, write_dataset, write_package

from assay import errors
from assay.analysis import builtin
from assay.core import PlatformCore
from assay.core.platform import CoreConfig
from assay.local import LocalPlatform, mocks
from assay.local.platform import DEFAULT_ACCOUNT
from assay.schema.requests import InferenceSessionCreateRequest

OWN = "alice"
OTHER = "team"


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[LocalPlatform]:
    with LocalPlatform(storage_root=tmp_path / "platform", account=OWN) as p:
        yield p


def _without_account(request: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k != "account"}


@pytest.mark.parametrize(("account", "expected"), [(None, OWN), (OTHER, OTHER)])
def test_create_arrow_dataset(
    platform: LocalPlatform, tmp_path: Path, account: str | None, expected: str
) -> None:
    directory = write_dataset(tmp_path / "data")
    dataset = platform.datasets.create_arrow_dataset(directory, name="data", account=account)
    assert dataset.account == expected
    assert platform.datasets.upload_arrow_dataset(dataset, directory).account == expected


@pytest.mark.parametrize(("account", "expected"), [(None, OWN), (OTHER, OTHER)])
def test_create_mock(platform: LocalPlatform, account: str | None, expected: str) -> None:
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=account)
    assert service.account == expected
    assert platform.inferenceservices.require(service.id).account == expected


@pytest.mark.parametrize(("account", "expected"), [(None, OWN), (OTHER, OTHER)])
def test_create_package(
    platform: LocalPlatform, tmp_path: Path, account: str | None, expected: str
) -> None:
    package = write_package(tmp_path / "package")
    module = platform.modules.create_package(package, name="pkg", account=account)
    assert module.account == expected
    assert platform.modules.upload_package(module, package).account == expected


@pytest.mark.parametrize(("account", "expected"), [(None, OWN), (OTHER, OTHER)])
def test_create_from_volume(
    platform: LocalPlatform, tmp_path: Path, account: str | None, expected: str
) -> None:
    directory = tmp_path / "weights"
    directory.mkdir()
    (directory / "config.json").write_text("{}")
    model = platform.models.create_from_volume(directory, name="weights", account=account)
    assert model.account == expected


def test_request_dicts_without_account_are_the_platforms(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """Every group's ``create`` takes a dict without ``account`` (or with ``account: None``),
    down to a whole audit: session, evaluation, Method, measurement, Family."""
    model = platform.models.create(_without_account(model_request()))
    assert model.account == OWN
    service = platform.inferenceservices.create({**service_request(), "account": None})
    assert service.account == OWN
    session = platform.inferencesessions.create({"inferenceService": service.id})
    assert session.inferencesession.account == OWN
    platform.inferencesessions.terminate(session.inferencesession.id)

    directory = write_dataset(tmp_path / "data", rows=6)
    dataset = platform.datasets.create_arrow_dataset(directory, name="data")
    platform.datasets.upload_arrow_dataset(dataset, directory)
    evaluation = platform.evaluations.create(
        {"dataset": dataset.id, "inferenceSession": {"inferenceService": service.id}}
    )
    assert (evaluation.account, evaluation.status) == (OWN, "Complete")

    method = builtin.text.LENGTH.register(platform)
    assert method.account == OWN
    measurement = platform.measurements.create(
        {
            "method": method.id,
            "scope": {"evaluation": evaluation.id},
            "inputs": [{"keyword": "evaluation", "entity": evaluation.id}],
        }
    )
    assert (measurement.account, measurement.status) == (OWN, "Complete")
    family = platform.families.create({"memberKind": "Dataset"})
    assert family.account == OWN
    assert {m.account for m in builtin.register_all(platform).values()} == {OWN}


def test_an_explicit_account_wins(platform: LocalPlatform) -> None:
    service = platform.inferenceservices.create(service_request(account=OTHER))
    assert service.account == OTHER
    made = platform.inferencesessions.create(
        InferenceSessionCreateRequest(account=OTHER, inferenceService=service.id)
    )
    assert made.inferencesession.account == OTHER
    platform.inferencesessions.terminate(made.inferencesession.id)
    assert builtin.text.LENGTH.register(platform, account=OTHER).account == OTHER


def test_the_default_of_a_platform_opened_without_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASSAY_ACCOUNT", raising=False)
    with LocalPlatform(storage_root=tmp_path / "a") as plain:
        assert plain.account == DEFAULT_ACCOUNT
        service = plain.inferenceservices.create_mock(mocks.TextCompletion)
        assert service.account == DEFAULT_ACCOUNT
    monkeypatch.setenv("ASSAY_ACCOUNT", "from-env")
    with LocalPlatform(storage_root=tmp_path / "b") as env:
        service = env.inferenceservices.create_mock(mocks.TextCompletion)
        assert service.account == "from-env"


def test_a_bad_account_is_still_refused(platform: LocalPlatform) -> None:
    with pytest.raises(errors.ValidationError, match="account") as info:
        platform.inferenceservices.create_mock(mocks.TextCompletion, account="not an account")
    assert "not a valid account name" in str(info.value)
    assert platform.inferenceservices.query() == []


def test_import_data_with_a_request_without_account(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    service = platform.inferenceservices.create_mock(mocks.TextCompletion)
    directory = write_dataset(tmp_path / "data", rows=2)
    dataset = platform.datasets.upload_arrow_dataset(
        platform.datasets.create_arrow_dataset(directory, name="data"), directory
    )
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    response = pa.struct([("_response_index_", pa.int64()), ("text", pa.string())])
    table = pa.table(
        {
            "_index_": pa.array([0, 1], pa.int64()),
            "_replication_": pa.array(["r", "r"]),
            "responses": pa.array([[{"_response_index_": 0, "text": "a"}]] * 2, pa.list_(response)),
        }
    )
    pq.write_table(table, outputs / "part-0.parquet")
    request = {"dataset": dataset.id, "inferenceSession": {"inferenceService": service.id}}
    assert platform.evaluations.import_data(outputs, evaluation_request=request).account == OWN
    imported = platform.evaluations.import_data(outputs, evaluation_request=request, account=OTHER)
    assert imported.account == OTHER


def test_a_core_without_a_default_account_requires_one(tmp_path: Path) -> None:
    """A core opened without a default account (a server's) fills in nothing: the request is
    refused naming the field, and the server's route fills in the token's account instead."""
    config = CoreConfig(
        store_url=f"sqlite:///{tmp_path / 'assay.db'}", storage_root=tmp_path / "store"
    )
    core = PlatformCore.from_config(config)
    try:
        with pytest.raises(errors.ValidationError) as info:
            core.models.create(_without_account(model_request()))
        assert "account" in str(info.value)
        assert core.models.query() == []
    finally:
        core.close()
