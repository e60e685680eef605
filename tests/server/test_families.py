"""``PATCH /families/{id}/members``: tags set, changed and removed; refusals; the same access
answers as the labels edit."""

from __future__ import annotations

from typing import Any

from tests.server.conftest import ALICE, BOB
from tests.server.helpers import Caller, Server, model_request

MISSING = "0" * 32


def _member(entity_id: str, kind: str = "Model") -> dict[str, Any]:
    return {"entity": {"kind": kind, "id": entity_id}}


def _family(caller: Caller, account: str) -> str:
    family: str = caller.create("families", {"account": account, "memberKind": "Model"})["id"]
    return family


def test_members_are_set_changed_and_removed(alice: Caller) -> None:
    family = _family(alice, ALICE)
    m1, m2 = (alice.create("models", model_request(ALICE))["id"] for _ in range(2))
    path = f"/families/{family}/members"
    answer = alice.ok(
        "PATCH", path, json={"members": {"v1": {**_member(m1), "description": "x"}, "v2": None}}
    )
    assert answer["kind"] == "Family" and list(answer["members"]) == ["v1"]
    v1 = answer["members"]["v1"]
    assert (v1["name"], v1["family"], v1["entity"], v1["description"]) == (
        "v1",
        family,
        {"kind": "Model", "id": m1},
        "x",
    )
    assert v1["creationTime"].endswith("Z")
    alice.ok("PATCH", path, json={"members": {"v2": _member(m2), "latest": _member(m2)}})
    alice.ok("PATCH", path, json={"schemaVersion": "0.1", "members": {"v1": None}})
    members = alice.ok("GET", f"/families/{family}")["members"]
    assert {tag: m["entity"]["id"] for tag, m in members.items()} == {"v2": m2, "latest": m2}


def test_bad_members_are_refused_naming_the_tag(alice: Caller) -> None:
    family = _family(alice, ALICE)
    path = f"/families/{family}/members"
    other = _family(alice, ALICE)
    for members, words in [
        ({"v1": _member(MISSING)}, ["'v1'", MISSING, "does not exist"]),
        ({"v2": _member(other, "Family")}, ["'v2'", "memberKind"]),
        ({"v3": _member(other)}, ["'v3'", "is a Family"]),
        ({"-bad tag": _member(MISSING)}, ["members", "-bad tag"]),
    ]:
        response = alice.patch(path, json={"members": members})
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert all(w in detail for w in words), detail
    for body in ({}, {"members": {"v1": {"entity": {"id": MISSING}}}}):
        assert alice.patch(path, json=body).status_code == 422
    assert alice.ok("GET", f"/families/{family}")["members"] == {}
    assert alice.patch(f"/families/{MISSING}/members", json={"members": {}}).status_code == 404


def _both(caller: Caller, family: str) -> list[tuple[int, str]]:
    """The answers of the labels edit and the members edit of ``family``."""
    answers = []
    for path, body in [
        (f"/families/{family}/labels", {"labels": {"a": "b"}}),
        (f"/families/{family}/members", {"members": {"v1": None}}),
    ]:
        response = caller.patch(path, json=body)
        answers.append((response.status_code, response.json()["detail"]))
    return answers


def test_the_members_edit_is_authorized_as_the_labels_edit(server: Server, alice: Caller) -> None:
    family = _family(alice, ALICE)
    # another account: 404, as for a Family that does not exist
    labels, members = _both(server.as_account(BOB), family)
    assert labels == members and labels[0] == 404
    assert _both(server.as_account(BOB), MISSING)[1] == (404, members[1].replace(family, MISSING))
    # a grant that sees the Family but may not edit it: 403
    reader = server.as_account(
        BOB, [{"resources": ["families"], "functions": ["get"], "accounts": [ALICE]}]
    )
    labels, members = _both(reader, family)
    assert labels == members and labels[0] == 403
    # no edit grant on families at all: 403 before anything is looked up
    other = server.as_account(BOB, [{"resources": ["models"], "functions": ["*"]}])
    labels, members = _both(other, family)
    assert labels == members and labels[0] == 403
    # an edit grant on exactly this Family: allowed
    editor = server.as_account(
        BOB, [{"resources": ["families"], "functions": ["edit"], "entities": [family]}]
    )
    for path, body in [
        (f"/families/{family}/labels", {"labels": {"a": "b"}}),
        (f"/families/{family}/members", {"members": {"v1": None}}),
    ]:
        response = editor.patch(path, json=body)
        assert response.status_code == 200, response.text


def test_a_member_the_caller_cannot_see_is_as_one_that_does_not_exist(
    alice: Caller, bob: Caller
) -> None:
    alices_model = alice.create("models", model_request(ALICE))["id"]
    family = _family(bob, BOB)
    path = f"/families/{family}/members"
    hidden = bob.patch(path, json={"members": {"v1": _member(alices_model)}})
    missing = bob.patch(path, json={"members": {"v1": _member(MISSING)}})
    assert hidden.status_code == missing.status_code == 422
    assert hidden.json()["detail"] == missing.json()["detail"].replace(MISSING, alices_model)
    assert bob.ok("GET", f"/families/{family}")["members"] == {}
