"""One access check for every id a request names (``assay.core.references``): for each kind
of reference, bob's request naming alice's entity gets exactly the answer of a request naming
an id that does not exist — same status, same body, same headers — so another account's ids
cannot be probed, nor built on (a session, evaluation, analysis, pipeline of alice's things)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from tests.server.conftest import BOB
from tests.server.helpers import (
    Caller,
    Server,
    analysis_request,
    build_world,
    measurement_method_request,
    notebook_method_request,
    service_request,
)

from assay.core.kinds import mock_service_request
from assay.local import mocks

#: A request naming one id: (method, path, body for that id).
Attack = tuple[str, str, Callable[[str], dict[str, Any]]]


def _headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() != "date"}


def assert_same_answer(caller: Caller, attack: Attack, victims: str) -> httpx.Response:
    """The answer to ``attack`` naming ``victims`` (another account's id) is byte for byte
    the answer naming a random id, the ids swapped."""
    method, path, body = attack
    missing = uuid.uuid4().hex
    theirs = caller.request(method, path, json=body(victims))
    nothing = caller.request(method, path, json=body(missing))
    assert nothing.status_code in (404, 422), (path, nothing.text)
    assert theirs.status_code == nothing.status_code, (path, theirs.text, nothing.text)
    assert theirs.content.replace(victims.encode(), missing.encode()) == nothing.content
    assert _headers(theirs) == _headers(nothing)
    return theirs


@pytest.fixture
def bobs(server: Server, bob: Caller) -> dict[str, str]:
    """bob's own world (so that each attack changes one reference of a valid request), and
    his notebook Method."""
    world = build_world(server, bob, BOB)
    case = bob.ok("GET", f"/safetycases/{world['safetycases']}")
    world["notebook"] = case["method"]["id"]
    return world


def _attacks(mine: dict[str, str]) -> dict[str, tuple[Attack, str]]:
    """Each kind of reference: the request, and which of alice's entities (a resource of the
    world) it names."""

    def analysis(**changes: Any) -> Callable[[str], dict[str, Any]]:
        def body(id: str) -> dict[str, Any]:
            request = analysis_request(
                BOB, mine["methods"], mine["evaluations"], "evaluation", mine["evaluations"]
            )
            for key, value in changes.items():
                if key == "scope":
                    request["scope"] = {**request["scope"], value: id}
                elif key == "inputs":
                    request["inputs"] = [{"keyword": "evaluation", "entity": id}]
                else:
                    request[key] = id
            return request

        return body

    def python_service(field: str) -> Callable[[str], dict[str, Any]]:
        def body(id: str) -> dict[str, Any]:
            request = service_request(BOB)
            configuration: dict[str, Any] = {"module": mine["modules"], "target": "audit:Model"}
            configuration.update({"module": id} if field == "module" else {"modules": [id]})
            request["runner"] = {"kind": "python", "configuration": configuration}
            return request

        return body

    def evaluation(field: str) -> Callable[[str], dict[str, Any]]:
        def body(id: str) -> dict[str, Any]:
            request: dict[str, Any] = {"account": BOB, "dataset": mine["datasets"]}
            if field == "dataset":
                request["dataset"] = id
            if field == "session":
                request["inferenceSessionReference"] = id
            else:
                service = id if field == "service" else mine["inferenceservices"]
                request["inferenceSession"] = {"inferenceService": service}
            return request

        return body

    safety_case = analysis_request(
        BOB, mine["notebook"], mine["evaluations"], "lengths", mine["measurements"]
    )
    family = f"/families/{mine['families']}/members"
    return {
        "session's service": (
            ("POST", "/inferencesessions", lambda id: {"account": BOB, "inferenceService": id}),
            "inferenceservices",
        ),
        "evaluation's dataset": (("POST", "/evaluations", evaluation("dataset")), "datasets"),
        "evaluation's service": (
            ("POST", "/evaluations", evaluation("service")),
            "inferenceservices",
        ),
        "evaluation's session": (
            ("POST", "/evaluations", evaluation("session")),
            "inferencesessions",
        ),
        "service's model": (
            ("POST", "/inferenceservices", lambda id: service_request(BOB, id)),
            "models",
        ),
        "service's module": (("POST", "/inferenceservices", python_service("module")), "modules"),
        "service's modules": (
            ("POST", "/inferenceservices", python_service("modules")),
            "modules",
        ),
        "method's modules": (
            ("POST", "/methods", lambda id: measurement_method_request(BOB, id)),
            "modules",
        ),
        "method's notebook module": (
            ("POST", "/methods", lambda id: notebook_method_request(BOB, id)),
            "modules",
        ),
        "measurement's method": (("POST", "/measurements", analysis(method=True)), "methods"),
        "measurement's input": (("POST", "/measurements", analysis(inputs=True)), "evaluations"),
        "measurement's scope.evaluation": (
            ("POST", "/measurements", analysis(scope="evaluation")),
            "evaluations",
        ),
        "measurement's scope.dataset": (
            ("POST", "/measurements", analysis(scope="dataset")),
            "datasets",
        ),
        "measurement's scope.inferenceService": (
            ("POST", "/measurements", analysis(scope="inferenceService")),
            "inferenceservices",
        ),
        "measurement's scope.model": (
            ("POST", "/measurements", analysis(scope="model")),
            "models",
        ),
        "safety case's input": (
            (
                "POST",
                "/safetycases",
                lambda id: {**safety_case, "inputs": [{"keyword": "lengths", "entity": id}]},
            ),
            "measurements",
        ),
        # (no Report cases: every Report create request is refused, whatever it references)
        "family member": (
            (
                "PATCH",
                family,
                lambda id: {"members": {"v1": {"entity": {"kind": "Dataset", "id": id}}}},
            ),
            "datasets",
        ),
    }


REFERENCES = list(_attacks(defaultdict(str)))


@pytest.mark.parametrize("reference", REFERENCES)
def test_a_reference_to_another_accounts_entity_is_answered_as_a_missing_one(
    reference: str, server: Server, bob: Caller, world: dict[str, str], bobs: dict[str, str]
) -> None:
    before = {r: bob.ok("GET", f"/{r}") for r in ("evaluations", "measurements", "families")}
    attack, resource = _attacks(bobs)[reference]
    answer = assert_same_answer(bob, attack, world[resource])
    assert "does not exist" in answer.json()["detail"], answer.text
    # nothing was made of alice's things
    assert {r: bob.ok("GET", f"/{r}") for r in before} == before


def test_a_pipeline_cannot_be_deployed_over_another_accounts_service(
    server: Server, alice: Caller, bob: Caller
) -> None:
    request = mock_service_request(mocks.TextCompletion, account="alice", name="private")
    private = alice.create("inferenceservices", request)["id"]
    sessions = len(bob.ok("GET", "/inferencesessions"))

    def deploy(id: str) -> dict[str, Any]:
        return {"definition": {"steps": [{"kind": "model", "service": id}]}}

    for path in ("/pipelines/stolen/deploy",):
        answer = assert_same_answer(bob, ("POST", path, deploy), private)
        assert answer.status_code == 404 and "not an InferenceService" in answer.json()["detail"]
    # nothing was deployed or stored: no pipeline, no session of alice's model for bob
    assert bob.get("/pipelines/stolen").status_code == 404
    assert len(bob.ok("GET", "/inferencesessions")) == sessions
    assert alice.ok("GET", "/inferencesessions") == []


def test_a_grant_to_get_an_entity_allows_building_on_it(
    server: Server, world: dict[str, str]
) -> None:
    # the rule is the token's grants, not the account: a grant to get alice's service lets
    # bob start a session of it
    guest = server.as_account(
        BOB,
        [
            {"resources": ["inferencesessions"], "functions": ["*"], "accounts": [BOB]},
            {
                "resources": ["inferenceservices"],
                "functions": ["get"],
                "entities": [world["inferenceservices"]],
            },
        ],
    )
    made = guest.create(
        "inferencesessions", {"account": BOB, "inferenceService": world["inferenceservices"]}
    )
    assert made["inferencesession"]["inferenceService"]["id"] == world["inferenceservices"]
