"""The OpenAPI document describes every route, and no request built from it — however wrong
its ids, paths, parameters or body — gets a 5xx."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from tests.server.helpers import RESOURCES, Caller, Server


def test_openapi_lists_every_route_with_a_summary(server: Server) -> None:
    response = server.client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    paths = spec["paths"]
    for resource in RESOURCES:
        assert set(paths[f"/v0/{resource}"]) == {"get", "post"}
        assert set(paths[f"/v0/{resource}/{{id}}"]) == {"get"}
        for suffix, method in [
            ("delete", "put"),
            ("labels", "patch"),
            ("documentation", "get"),
            ("documentation", "patch"),
            ("downlinks", "get"),
            ("logs/workflow", "get"),
        ]:
            assert method in paths[f"/v0/{resource}/{{id}}/{suffix}"], (resource, suffix)
    for resource in ("datasets", "models", "modules"):
        assert "get" in paths[f"/v0/{resource}/{{id}}/upload/{{path}}"]
        assert "post" in paths[f"/v0/{resource}/{{id}}/finalize"]
    for path in ("token", "ready", "terminate", "infer/{endpoint}"):
        assert f"/v0/inferencesessions/{{id}}/{path}" in paths
    for path in ("/v0/scores", "/v0/safetycases/scores", "/v0/safetycases/curves"):
        assert "get" in paths[path]
    operations = [op for item in paths.values() for op in item.values()]
    assert all(op.get("summary") for op in operations)
    assert len({op["operationId"] for op in operations}) == len(operations)
    query = paths["/v0/datasets"]["get"]
    assert {p["name"] for p in query["parameters"]} >= {"query", "labels", "limit", "after"}
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    create = paths["/v0/datasets"]["post"]["requestBody"]["content"]["application/json"]
    assert create["schema"]["$ref"].endswith("DatasetCreateRequest")


def _targets(path: str, ids: dict[str, str]) -> list[tuple[str, bool]]:
    """The path with real ids (True) and with ids that are wrong or name nothing (False)."""
    resource = path.split("/")[2]
    real = ids.get(resource, "0" * 32)
    out = []
    for id, artifact in ((real, "part-0.parquet"), ("0" * 32, "x"), ("not-an-id", "%2E%2E/x")):
        filled = (
            path.replace("{id}", id)
            .replace("{path}", artifact)
            .replace("{endpoint}", "generate")
            .replace("{resource}", "datasets")
        )
        out.append((filled.removeprefix("/v0"), id == real))
    return out


def test_no_request_gets_a_5xx(
    server: Server, alice: Caller, bob: Caller, world: dict[str, str]
) -> None:
    paths: dict[str, Any] = server.client.get("/openapi.json").json()["paths"]
    junk = {"limit": "-1", "query": "{", "labels": "[]", "after": "x", "since": "never"}
    statuses: set[int] = set()
    for path, item in sorted(paths.items()):
        for method in item:
            variants: list[dict[str, Any]] = (
                [{}, {"params": junk}]
                if method == "get"
                else [{}, {"json": {"unexpected": [1, {"a": None}]}}, {"json": []}]
            )
            for (target, real), variant in itertools.product(_targets(path, world), variants):
                for caller in (alice, bob) if real else (alice,):
                    response = caller.request(method.upper(), target, **variant)
                    statuses.add(response.status_code)
                    assert response.status_code < 500, (method, target, variant, response.text)
                    if response.status_code >= 400:
                        assert isinstance(response.json()["detail"], str)
    assert {400, 403, 404, 409, 422} <= statuses  # the requests reached the routes


def test_every_route_is_documented(server: Server) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "design" / "server.md").read_text()
    paths = server.client.get("/openapi.json").json()["paths"]
    for path in paths:
        short = path.removeprefix("/v0")
        generic = "/R" + short[len(short.split("/")[1]) + 1 :]
        assert f"`{short}" in page or f"`{generic}" in page or f"`{path}" in page, path


def test_every_operation_documents_its_errors_as_json(server: Server) -> None:
    spec = server.client.get("/openapi.json").json()
    assert spec["components"]["schemas"]["ErrorDetail"]["required"] == ["detail"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            signed = path.startswith("/v0/storage/")  # no bearer token: no 401
            statuses = (
                {"403", "404", "411", "413", "422"} if signed else {"401", "403", "404", "422"}
            )
            for status in statuses:
                content = responses[status]["content"]
                assert list(content) == ["application/json"], (method, path, status)
                assert content["application/json"]["schema"]["$ref"].endswith("/ErrorDetail")
    document = spec["paths"]["/v0/safetycases/{id}/document"]["get"]["responses"]
    assert list(document["200"]["content"]) == ["text/html"]
