"""``Client.families.edit_members`` / ``get_member`` against a real server, as locally."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.client.conftest import ALICE, BOB

from assay import errors
from assay.client import Client
from assay.local import LocalPlatform
from assay.schema.platform import FamilyMemberBase, Model
from assay.schema.requests import FamilyMembersEditRequest

MISSING = "0" * 32


def _model(platform: Client | LocalPlatform, account: str = ALICE) -> str:
    request = {
        "account": account,
        "name": "model",
        "artifact": {"kind": "Mock"},
        "source": {"kind": "Mock"},
        "resources": {"storage": "1Gi"},
    }
    return platform.models.create(request).id


def test_members_are_set_read_and_removed(alice: Client) -> None:
    family = alice.families.create({"account": ALICE, "memberKind": "Model"}).id
    m1, m2 = _model(alice), _model(alice)
    edited = alice.families.edit_members(
        family, {"v1": {"entity": {"kind": "Model", "id": m1}, "description": "first"}}
    )
    assert edited.members["v1"].entity.id == m1 and edited.members["v1"].family == family
    request = FamilyMembersEditRequest(
        members={
            "v2": FamilyMemberBase.model_validate({"entity": {"kind": "Model", "id": m2}}),
            "v1": None,
        }
    )
    assert sorted(alice.families.edit_members(family, request).members) == ["v2"]
    member = alice.families.get_member(family, "v2")
    assert isinstance(member, Model) and member.id == m2
    assert alice.families.get_member(family, "v1") is None
    assert alice.families.get(family).members == alice.families.edit_members(family, {}).members


def test_refusals_are_those_of_the_local_platform(alice: Client, tmp_path: Path) -> None:
    with LocalPlatform(storage_root=tmp_path / "local", account=ALICE) as local:
        answers = []
        for platform in (local, alice):
            family = platform.families.create({"account": ALICE, "memberKind": "Model"}).id
            found = []
            for members in (
                {"v1": {"entity": {"kind": "Dataset", "id": MISSING}}},
                {"v1": {"entity": {"kind": "Model", "id": MISSING}}},
                {"bad tag": None},
            ):
                with pytest.raises(errors.ValidationError) as info:
                    platform.families.edit_members(family, members)
                found.append(str(info.value).replace(family, "<id>"))
            answers.append(found)
        assert answers[0] == answers[1]


def test_a_member_of_another_account_is_as_one_that_does_not_exist(
    alice: Client, bob: Client
) -> None:
    family = bob.families.create({"account": BOB, "memberKind": "Model"}).id
    alices = _model(alice)
    with pytest.raises(errors.ValidationError, match="does not exist"):
        bob.families.edit_members(family, {"v1": {"entity": {"kind": "Model", "id": alices}}})
    with pytest.raises(errors.NotFoundError):
        alice.families.edit_members(family, {"v1": None})
