"""Helpers for driving the server in-process: a client per token, uploads through signed URLs,
and a small world of one entity of every kind, made through the API."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
from starlette.testclient import TestClient

from assay.core.platform import PlatformCore
from assay.schema.dataschema import DataSchema
from assay.server import ServerSettings, issue_token
from assay.server.state import ServerState

V0 = "/v0"

#: Every resource kind the API serves.
RESOURCES = (
    "datasets",
    "evaluations",
    "families",
    "inferenceservices",
    "inferencesessions",
    "measurements",
    "methods",
    "models",
    "modules",
    "reports",
    "safetycases",
)

METRICS = '''
import pyarrow as pa
import pyarrow.compute as pc


def lengths(args, *, evaluation):
    """Characters in the first response to each instance."""
    table = evaluation.to_table()
    text = pc.struct_field(pc.list_element(table["responses"], 0), "text")
    print("measured", table.num_rows, "rows")
    return pa.table({
        "_index_": table["_index_"],
        "_replication_": table["_replication_"],
        "length": pc.utf8_length(text).cast(pa.int64()),
    })
'''

LENGTHS_SCHEMA = pa.schema(
    [("_index_", pa.int64()), ("_replication_", pa.string()), ("length", pa.int64())]
)


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class Caller:
    """Requests to the API with one bearer token (or none)."""

    def __init__(self, client: TestClient, token: str | None) -> None:
        self.client = client
        self.token = token

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        url = path if path.startswith("http") else V0 + path
        return self.client.request(method, url, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON of a successful call (fails the test with the detail otherwise)."""
        response = self.request(method, path, **kwargs)
        assert response.status_code < 300, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response.json()

    def create(self, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self.ok("POST", f"/{resource}", json=body)
        return created

    def upload(self, resource: str, id: str, files: Mapping[str, bytes]) -> dict[str, Any]:
        """PUT each file to its signed URL, then finalize."""
        for path, data in files.items():
            signed = self.ok("GET", f"/{resource}/{id}/upload/{path}")
            assert signed["method"] == "PUT"
            reply = self.client.put(signed["url"], content=data, headers=signed["headers"])
            assert reply.status_code == 200, reply.text
            assert reply.json()["digest"]["md5"] == md5(data)
        status: dict[str, Any] = self.ok("POST", f"/{resource}/{id}/finalize")
        return status


class Server:
    """A running app (in-process) and ways to call it."""

    def __init__(self, client: TestClient, settings: ServerSettings) -> None:
        self.client = client
        self.settings = settings

    @property
    def state(self) -> ServerState:
        state: ServerState = self.client.app.state.assay  # type: ignore[attr-defined]
        return state

    @property
    def core(self) -> PlatformCore:
        return self.state.core

    def token(self, account: str, grants: list[dict[str, Any]] | None = None) -> str:
        return issue_token(self.core, account=account, grants=grants)

    def as_account(self, account: str, grants: list[dict[str, Any]] | None = None) -> Caller:
        return Caller(self.client, self.token(account, grants))

    def anonymous(self) -> Caller:
        return Caller(self.client, None)

    def wait(self, id: str, timeout: float = 60) -> dict[str, Any]:
        """Wait (on the platform, with a timeout) until the entity's status is terminal."""
        return self.core.engine.wait(id, timeout=timeout)


def parquet_bytes(rows: int = 12) -> tuple[bytes, pa.Schema]:
    table = pa.table(
        {
            "_index_": pa.array(range(rows), pa.int64()),
            "text": pa.array([f"prompt {i}" for i in range(rows)]),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue(), table.schema


def dataset_request(
    account: str, data: bytes, schema: pa.Schema, name: str = "data"
) -> dict[str, Any]:
    return {
        "account": account,
        "name": name,
        "artifacts": [{"kind": "parquet", "path": "part-0.parquet", "digest": {"md5": md5(data)}}],
        "schema": DataSchema.from_arrow(schema).model_dump(by_alias=True),
    }


def module_files() -> dict[str, bytes]:
    return {
        "audit/__init__.py": b"",
        "audit/metrics.py": METRICS.encode(),
        "case.ipynb": b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}',
    }


def module_request(account: str, files: Mapping[str, bytes]) -> dict[str, Any]:
    return {
        "account": account,
        "name": "audit",
        "artifacts": [{"path": p, "digest": {"md5": md5(d)}} for p, d in files.items()],
    }


def model_request(account: str) -> dict[str, Any]:
    return {
        "account": account,
        "name": "model",
        "artifact": {"kind": "Mock"},
        "source": {"kind": "Mock"},
        "resources": {"storage": "1Gi"},
    }


def service_request(account: str, model: str | None = None) -> dict[str, Any]:
    output = DataSchema.from_arrow(pa.schema([("text", pa.string())]))
    request: dict[str, Any] = {
        "account": account,
        "name": "service",
        "runner": {
            "kind": "mock",
            "configuration": {"mockType": "assay.local.mocks.TextCompletion"},
        },
        "interface": {"endpoint": "generate", "outputSchema": output.model_dump(by_alias=True)},
    }
    if model is not None:
        request["model"] = model
    return request


def measurement_method_request(account: str, module: str) -> dict[str, Any]:
    return {
        "account": account,
        "name": "lengths",
        "scope": "Evaluation",
        "implementation": {
            "kind": "PythonFunction",
            "pythonFunction": {"fullyQualifiedName": "audit.metrics.lengths"},
        },
        "inputs": [{"kind": "Evaluation", "keyword": "evaluation"}],
        "output": {
            "kind": "Measurement",
            "measurement": {
                "name": "lengths",
                "level": "Instance",
                "schema": DataSchema.from_arrow(LENGTHS_SCHEMA).model_dump(by_alias=True),
            },
        },
        "modules": [module],
    }


def notebook_method_request(
    account: str, module: str, notebook: str = "case.ipynb", scores: list[Any] | None = None
) -> dict[str, Any]:
    return {
        "account": account,
        "name": "case",
        "scope": "Evaluation",
        "implementation": {
            "kind": "JupyterNotebook",
            "jupyterNotebook": {"notebookModule": module, "notebookPath": notebook},
        },
        "inputs": [{"kind": "Measurement", "keyword": "lengths"}],
        "output": {"kind": "SafetyCase", "safetyCase": {"name": "Length audit"}},
        "scores": scores or [],
        "modules": [module],
    }


def analysis_request(
    account: str, method: str, evaluation: str, keyword: str, entity: str
) -> dict[str, Any]:
    return {
        "account": account,
        "method": method,
        "scope": {"evaluation": evaluation},
        "inputs": [{"keyword": keyword, "entity": entity}],
    }


def import_report(core: PlatformCore, account: str, evaluation: str) -> str:
    """A ``Complete`` Report record over ``evaluation``, stored as a fetched one is (Reports
    cannot be created: the specification deprecates them); returns its id."""
    from assay.schema import ids

    source = core.evaluations.require(evaluation)
    doc = {
        "kind": "Report",
        "id": ids.generate_entity_id(),
        "account": account,
        "status": "Complete",
        "creationTime": "2024-01-01T00:00:00Z",
        "rubric": "x.Rubric",
        "evaluation": evaluation,
        "dataset": source.dataset,
        "inferenceService": source.inferenceSession.inferenceService.id,
    }
    return core.reports._import_record(doc).id


def build_world(server: Server, caller: Caller, account: str) -> dict[str, str]:
    """One entity of every resource kind, owned by ``account``, made through the API (the
    Report, which cannot be created, imported); returns resource → id. The data set is not
    uploaded, so the evaluation and the analyses wait (nothing heavy runs)."""
    world: dict[str, str] = {}
    world["models"] = caller.create("models", model_request(account))["id"]
    files = module_files()
    module = caller.create("modules", module_request(account, files))["id"]
    caller.upload("modules", module, files)
    assert server.wait(module)["status"] == "Ready"
    world["modules"] = module
    data, schema = parquet_bytes()
    world["datasets"] = caller.create("datasets", dataset_request(account, data, schema))["id"]
    world["inferenceservices"] = service = caller.create(
        "inferenceservices", service_request(account, world["models"])
    )["id"]
    session = caller.create("inferencesessions", {"account": account, "inferenceService": service})
    world["inferencesessions"] = session["inferencesession"]["id"]
    evaluation = caller.create(
        "evaluations",
        {
            "account": account,
            "dataset": world["datasets"],
            "inferenceSession": {"inferenceService": service},
        },
    )
    world["evaluations"] = evaluation["id"]
    world["methods"] = caller.create("methods", measurement_method_request(account, module))["id"]
    notebook_method = caller.create("methods", notebook_method_request(account, module))["id"]
    world["measurements"] = measurement = caller.create(
        "measurements",
        analysis_request(
            account, world["methods"], evaluation["id"], "evaluation", evaluation["id"]
        ),
    )["id"]
    world["safetycases"] = caller.create(
        "safetycases",
        analysis_request(account, notebook_method, evaluation["id"], "lengths", measurement),
    )["id"]
    # Reports cannot be created (deprecated; POST /reports is refused): one imported instead
    world["reports"] = import_report(server.core, account, evaluation["id"])
    world["families"] = caller.create("families", {"account": account, "memberKind": "Dataset"})[
        "id"
    ]
    server.wait(world["inferencesessions"])
    return world
