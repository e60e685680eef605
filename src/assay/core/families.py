"""The Families group: versions of one kind of entity under tags (``family@tag``).

A Family's members are edited with :meth:`Families.edit_members` (JSON Merge Patch: tags given
are set, tags given as ``None`` removed, others kept), as ``PATCH /families/{id}/members`` does
on the server. Every member must exist and be of the Family's ``memberKind``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from assay import errors
from assay.core import references
from assay.core.groups import EntityGroup, iso
from assay.engine.transitions import utc_now
from assay.schema.base import validate_model
from assay.schema.platform import Entity, Family, FamilyMemberBase
from assay.schema.requests import FamilyCreateRequest, FamilyMembersEditRequest

__all__ = ["Families", "member_not_found"]


def member_not_found(
    family: Family, tag: str, member: FamilyMemberBase, *, found: str | None = None
) -> errors.ValidationError:
    """The error for a member ``tag`` whose entity does not exist (``found``: the kind it
    has instead). An entity the caller may not use gets the answer of one that does not exist
    (:mod:`assay.core.references`)."""
    kind = str(family.memberKind)
    what = "does not exist" if found is None else f"is a {found}"
    return errors.ValidationError(
        f"Family {family.id} members: tag {tag!r}: members.{tag}.entity.id refers to {kind} "
        f"{member.entity.id!r}, which {what}; create it first, or check the id",
        field=f"members.{tag}.entity.id",
        value=member.entity.id,
        entity=family.id,
    )


class Families(EntityGroup[Family]):
    kind = "Family"
    request_type = FamilyCreateRequest

    def edit_members(
        self,
        id: str,
        members: Mapping[str, FamilyMemberBase | Mapping[str, Any] | None]
        | FamilyMembersEditRequest,
    ) -> Family:
        """Set tagged members of the Family ``id``: each key is a tag (e.g. ``v1.2``), each
        value a member (``{"entity": {"kind", "id"}, "description"?}``) or ``None``, which
        removes the tag. Tags not given stay as they are. Every member must exist and be of
        the Family's ``memberKind``; otherwise :class:`~assay.errors.ValidationError` and
        nothing changes. Returns the Family."""
        what = f"Family {id} members"
        if isinstance(members, FamilyMembersEditRequest):
            req = members
        else:
            req = validate_model(FamilyMembersEditRequest, {"members": dict(members)}, what=what)
        family = self.require(id)
        for tag, member in req.members.items():
            if member is not None:
                self._check_member(family, tag, member, what)
        now = iso(utc_now())

        def mutate(doc: dict[str, Any]) -> dict[str, Any]:
            current = dict(doc.get("members") or {})
            for tag, member in req.members.items():
                if member is None:
                    current.pop(tag, None)
                else:
                    body = member.model_dump(mode="json", by_alias=True, exclude_none=True)
                    current[tag] = {**body, "name": tag, "family": id, "creationTime": now}
            doc["members"] = current
            return doc

        record = self._core.store.update(
            id, mutate, kind=self.kind, refs=lambda doc: self._stored_refs(self._parse(doc))
        )
        return self._parse(record.doc)

    def _check_member(self, family: Family, tag: str, member: FamilyMemberBase, what: str) -> None:
        """Refuse a member that does not exist or is not of the Family's ``memberKind``."""
        wanted = str(family.memberKind)
        ref = member.entity
        declared = str(getattr(ref.kind, "value", ref.kind))
        field = f"members.{tag}.entity"
        if declared != wanted:
            raise errors.ValidationError(
                f"{what}: tag {tag!r}: {field}.kind is {declared!r}, but the Family's members "
                f"are {wanted} entities (memberKind); tag a {wanted}",
                field=f"{field}.kind",
                value=declared,
                entity=family.id,
            )
        if references.find(self._core, wanted, ref.id) is not None:
            return
        record = self._core.store.get(ref.id)
        visible = record is not None and references.may_use(
            str(record.doc.get("kind")), str(record.doc.get("account")), ref.id
        )
        found = str(record.doc.get("kind")) if record is not None and visible else None
        raise member_not_found(family, tag, member, found=found)

    def get_member(self, id: str, tag: str) -> Entity | None:
        """The entity tagged ``tag`` in the Family ``id``; None when the Family has no such
        tag."""
        member = self.require(id).members.get(tag)
        if member is None:
            return None
        kind = str(getattr(member.entity.kind, "value", member.entity.kind))
        entity: Entity = self._core.group(kind).require(member.entity.id)
        return entity
