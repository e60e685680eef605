"""The reference platform's API, exactly (issue 15, item 5), through ``Client`` and the server:

- ``get(id)`` answers None for an id the server does not know (or the token may not see), on
  every group, while the server's ``GET /v0/<kind>/{id}`` still answers 404; ``require(id)``
  and every other call about one entity still raise ``NotFoundError``;
- the server keeps deleted entities (there is no purge route, and ``Client`` has no
  ``purge``); a SafetyCase fetched from it into a ``LocalPlatform`` and purged there goes with
  the Scores and Curves it brought, while the server keeps its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.client.conftest import ALICE, LiveServer
from tests.client.test_audit import SCORES, measurement_method, write_dataset, write_package

from assay import errors
from assay.client import Client
from assay.local import LocalPlatform, mocks

UNKNOWN = "0" * 32

#: Every entity group of the client (the resource of each kind's routes).
GROUPS = (
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


@pytest.fixture(scope="module")
def safetycase(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Complete SafetyCase of alice's on the server, with one score and one curve."""
    root = tmp_path_factory.mktemp("spec")
    token = live_server.token(ALICE)
    with Client(live_server.url, token, progress=False, cache_dir=root / "cache") as client:
        directory = write_dataset(root / "data")
        dataset = client.datasets.create_arrow_dataset(directory, account=ALICE, name="prompts")
        dataset = client.datasets.upload_arrow_dataset(dataset, directory)
        package = write_package(root / "pkg")
        module = client.modules.create_package(package, account=ALICE, name="lengthaudit")
        module = client.modules.upload_package(module, package)
        service = client.inferenceservices.create_mock(
            mocks.TextCompletion, account=ALICE, kwargs={"seed": 3}
        )
        evaluation = client.evaluations.create(
            {
                "account": ALICE,
                "dataset": dataset.id,
                "inferenceSession": {"inferenceService": service.id},
            }
        )
        method = client.methods.create(measurement_method(module.id))
        measurement = client.measurements.create(
            {
                "account": ALICE,
                "method": method.id,
                "scope": {"evaluation": evaluation.id},
                "inputs": [{"keyword": "evaluation", "entity": evaluation.id}],
            }
        )
        notebook = client.methods.create(
            {
                "account": ALICE,
                "name": "case",
                "scope": "Evaluation",
                "implementation": {
                    "kind": "JupyterNotebook",
                    "jupyterNotebook": {"notebookModule": module.id, "notebookPath": "case.ipynb"},
                },
                "inputs": [{"kind": "Measurement", "keyword": "lengths"}],
                "output": {"kind": "SafetyCase", "safetyCase": {"name": "Length audit"}},
                "scores": SCORES,
                "modules": [module.id],
            }
        )
        case = client.safetycases.create(
            {
                "account": ALICE,
                "method": notebook.id,
                "scope": {"evaluation": evaluation.id},
                "inputs": [{"keyword": "lengths", "entity": measurement.id}],
            }
        )
        finished = client.safetycases.wait(case.id, timeout=180)
        assert finished.status == "Complete", finished.message
        yield case.id


# -- get, require ----------------------------------------------------------------------------


@pytest.mark.parametrize("resource", GROUPS)
def test_get_of_an_unknown_id_is_none(alice: Client, resource: str) -> None:
    group = getattr(alice, resource)
    assert group.get(UNKNOWN) is None
    with pytest.raises(errors.NotFoundError) as info:
        group.require(UNKNOWN)
    assert (info.value.kind, info.value.id) == (group.kind, UNKNOWN)


def test_get_of_another_kinds_or_accounts_entity_is_none(alice: Client, bob: Client) -> None:
    family = alice.families.create({"account": ALICE, "memberKind": "Dataset"})
    assert alice.families.get(family.id) == family
    assert alice.families.require(family.id) == family
    assert alice.datasets.get(family.id) is None  # another kind's id
    assert alice.methods.get(family.id) is None
    assert bob.families.get(family.id) is None  # another account's: as if it did not exist
    with pytest.raises(errors.NotFoundError):
        bob.families.require(family.id)


def test_get_still_raises_what_is_not_a_404(
    live_server: LiveServer, make_client: Callable[..., Client]
) -> None:
    from assay.core.tokens import TokenSigner
    from assay.server import issue_token

    forged = issue_token(TokenSigner(b"another secret, not the server's"), account=ALICE)
    with pytest.raises(errors.AuthenticationError):
        make_client(token=forged).datasets.get(UNKNOWN)
    reader = live_server.token(
        ALICE, [{"resources": ["methods"], "functions": ["get"], "accounts": [ALICE]}]
    )
    with pytest.raises(errors.PermissionDeniedError):
        make_client(token=reader).datasets.get(UNKNOWN)  # no `get` on datasets at all


#: Calls about one entity (besides get) and the groups that have them: each raises
#: NotFoundError for an unknown id.
CALLS: list[tuple[str, str, Callable[[Any, Path], Any]]] = [
    *[(r, "require", lambda g, _: g.require(UNKNOWN)) for r in GROUPS],
    *[(r, "delete", lambda g, _: g.delete(UNKNOWN)) for r in GROUPS],
    *[(r, "documentation", lambda g, _: g.documentation(UNKNOWN)) for r in GROUPS],
    *[
        (r, "edit_documentation", lambda g, _: g.edit_documentation(UNKNOWN, title="t"))
        for r in GROUPS
    ],
    *[(r, "label", lambda g, _: g.label(UNKNOWN, {"a": "b"})) for r in GROUPS],
    *[(r, "wait", lambda g, _: g.wait(UNKNOWN, timeout=1)) for r in GROUPS],
    *[(r, "download", lambda g, tmp: g.download(UNKNOWN, tmp / "out")) for r in GROUPS],
    *[
        (r, "terminate", lambda g, _: g.terminate(UNKNOWN))
        for r in ("evaluations", "measurements", "safetycases", "inferencesessions")
    ],
    *[
        (r, "logs", lambda g, _: g.logs(UNKNOWN))
        for r in ("evaluations", "measurements", "safetycases", "inferencesessions")
    ],
    *[
        (r, "open", lambda g, _: g.open(UNKNOWN))
        for r in ("datasets", "evaluations", "measurements")
    ],
    ("safetycases", "scores", lambda g, _: g.scores(UNKNOWN)),
    ("safetycases", "curves", lambda g, _: g.curves(UNKNOWN)),
    ("safetycases", "document", lambda g, _: g.document(UNKNOWN)),
    ("inferencesessions", "token", lambda g, _: g.token(UNKNOWN)),
    ("families", "get_member", lambda g, _: g.get_member(UNKNOWN, "tag")),
]


@pytest.mark.parametrize(
    ("resource", "call"),
    [(r, c) for r, _, c in CALLS],
    ids=[f"{r}.{name}" for r, name, _ in CALLS],
)
def test_other_calls_about_an_unknown_id_still_raise(
    alice: Client, tmp_path: Path, resource: str, call: Callable[[Any, Path], Any]
) -> None:
    with pytest.raises(errors.NotFoundError):
        call(getattr(alice, resource), tmp_path)


@pytest.mark.parametrize("resource", GROUPS)
def test_the_get_route_still_answers_404(live_server: LiveServer, resource: str) -> None:
    """``get`` answering None is the clients' doing: the route answers 404, never 200 null."""
    headers = {"Authorization": f"Bearer {live_server.token(ALICE)}"}
    with httpx.Client(base_url=f"{live_server.url}/v0", headers=headers) as http:
        response = http.get(f"/{resource}/{UNKNOWN}")
    assert response.status_code == 404, response.text
    assert response.headers["x-assay-error"] == "NotFoundError"
    assert UNKNOWN in response.json()["detail"]


# -- purge -----------------------------------------------------------------------------------


def test_a_fetched_safety_case_is_purged_with_its_scores(
    alice: Client, safetycase: str, tmp_path: Path, live_server: LiveServer
) -> None:
    scores = alice.safetycases.scores(safetycase)
    curves = alice.safetycases.curves(safetycase)
    assert [s.name for s in scores] == ["mean_length"]
    assert [c.name for c in curves] == ["share_below"]
    with LocalPlatform(tmp_path / "local", account=ALICE, remote_client=alice) as local:
        local.safetycases.fetch(safetycase)
        assert [s.id for s in local.scores.query(analysis=safetycase)] == [scores[0].id]
        assert [c.id for c in local.scores.curves(analysis=safetycase)] == [curves[0].id]
        local.safetycases.purge(safetycase)
        assert local.safetycases.get(safetycase) is None
        assert local.scores.query(analysis=safetycase) == []
        assert local.scores.curves(analysis=safetycase) == []
    # the server's own records are untouched by a local purge
    assert alice.scores.query(analysis=safetycase) == scores
    assert alice.scores.curves(analysis=safetycase) == curves

    # the server keeps deleted entities: no purge route, no Client.purge
    with pytest.raises(AttributeError, match="LocalPlatform only"):
        alice.safetycases.purge(safetycase)
    headers = {"Authorization": f"Bearer {live_server.token(ALICE)}"}
    with httpx.Client(base_url=f"{live_server.url}/v0", headers=headers) as http:
        for method, path in (
            ("DELETE", f"/safetycases/{safetycase}"),
            ("PUT", f"/safetycases/{safetycase}/purge"),
        ):
            assert http.request(method, path).status_code in (404, 405), path
    alice.safetycases.delete(safetycase)
    deleted = alice.safetycases.get(safetycase)
    assert deleted is not None and deleted.status == "Deleted"
    assert alice.scores.query(analysis=safetycase) == scores  # kept with the entity
