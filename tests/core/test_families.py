"""Family members: set, change and remove tags; members must exist and be of the memberKind."""

from __future__ import annotations

import pytest
from tests.conftest import ACCOUNT, model_request

from assay import errors
from assay.local import LocalPlatform
from assay.schema.platform import FamilyMemberBase, Model
from assay.schema.requests import FamilyMembersEditRequest


def _member(entity_id: str, kind: str = "Model", **extra: str) -> dict[str, object]:
    return {"entity": {"kind": kind, "id": entity_id}, **extra}


@pytest.fixture
def models(platform: LocalPlatform) -> list[str]:
    return [platform.models.create(model_request(f"m{i}")).id for i in range(3)]


@pytest.fixture
def family_id(platform: LocalPlatform) -> str:
    return platform.families.create({"account": ACCOUNT, "memberKind": "Model"}).id


def test_tags_are_set_changed_and_removed_and_others_kept(
    platform: LocalPlatform, family_id: str, models: list[str]
) -> None:
    families = platform.families
    family = families.edit_members(
        family_id, {"v1": _member(models[0], description="first"), "v2": _member(models[1])}
    )
    assert sorted(family.members) == ["v1", "v2"]
    v1 = family.members["v1"]
    assert (v1.name, v1.family, v1.entity.id, v1.description) == (
        "v1",
        family_id,
        models[0],
        "first",
    )
    assert v1.creationTime.tzinfo is not None
    assert families.get(family_id).members == family.members  # stored

    family = families.edit_members(
        family_id,
        FamilyMembersEditRequest(
            members={"v2": FamilyMemberBase.model_validate(_member(models[2])), "v1": None}
        ),
    )
    assert sorted(family.members) == ["v2"]
    assert family.members["v2"].entity.id == models[2]
    assert family.members["v2"].creationTime >= v1.creationTime

    family = families.edit_members(family_id, {"latest": _member(models[0]), "gone": None})
    assert sorted(family.members) == ["latest", "v2"]  # removing an absent tag is no error


def test_get_member_is_the_tagged_entity_or_none(
    platform: LocalPlatform, family_id: str, models: list[str]
) -> None:
    platform.families.edit_members(family_id, {"v1": _member(models[1])})
    member = platform.families.get_member(family_id, "v1")
    assert isinstance(member, Model) and member.id == models[1]
    assert platform.families.get_member(family_id, "v9") is None
    with pytest.raises(errors.NotFoundError):
        platform.families.get_member("0" * 32, "v1")


def test_the_store_indexes_the_members_as_they_change(
    platform: LocalPlatform, family_id: str, models: list[str]
) -> None:
    def families_of(model: str) -> list[str]:
        return [d["id"] for d in platform.core.store.query(kind="Family", refs={"members": model})]

    platform.families.edit_members(family_id, {"v1": _member(models[0])})
    assert families_of(models[0]) == [family_id]
    platform.families.edit_members(family_id, {"v1": _member(models[1])})
    assert (families_of(models[0]), families_of(models[1])) == ([], [family_id])
    platform.families.edit_members(family_id, {"v1": None})
    assert families_of(models[1]) == []


def test_a_member_of_another_kind_is_refused_naming_the_tag(
    platform: LocalPlatform, family_id: str, models: list[str]
) -> None:
    with pytest.raises(errors.ValidationError, match=r"tag 'v1'.*memberKind") as info:
        platform.families.edit_members(
            family_id, {"v0": _member(models[0]), "v1": _member(models[1], kind="Dataset")}
        )
    assert info.value.field == "members.v1.entity.kind"
    assert platform.families.get(family_id).members == {}  # nothing applied


def test_a_member_that_is_not_there_is_refused_naming_the_tag(
    platform: LocalPlatform, family_id: str, models: list[str]
) -> None:
    missing = "f" * 32
    with pytest.raises(
        errors.ValidationError, match=f"tag 'v2'.*{missing}.*does not exist"
    ) as info:
        platform.families.edit_members(family_id, {"v2": _member(missing)})
    assert info.value.field == "members.v2.entity.id"
    # an id of another kind, declared as a Model
    other = platform.families.create({"account": ACCOUNT, "memberKind": "Model"}).id
    with pytest.raises(errors.ValidationError, match="is a Family") as info:
        platform.families.edit_members(family_id, {"v2": _member(other)})
    assert platform.families.get(family_id).members == {}


@pytest.mark.parametrize("tag", ["", "-v1", "v 1", "x" * 129])
def test_a_bad_tag_is_refused(
    platform: LocalPlatform, family_id: str, models: list[str], tag: str
) -> None:
    with pytest.raises(errors.ValidationError, match="members") as info:
        platform.families.edit_members(family_id, {tag: _member(models[0])})
    assert "members" in str(info.value.field)


def test_editing_the_members_of_a_family_that_is_not_there(platform: LocalPlatform) -> None:
    with pytest.raises(errors.NotFoundError):
        platform.families.edit_members("0" * 32, {"v1": None})
