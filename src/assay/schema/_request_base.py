"""The bases of every request, and the edit requests.

Requests are what a client sends: they refuse naive datetimes (a request's time must say its
timezone) and go on the wire without the fields the caller did not set, so the server fills in
its defaults. Edit requests follow JSON Merge Patch: a field set to ``None`` removes the value,
a field left out keeps it.

Public names are re-exported by :mod:`assay.schema.requests`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field, StringConstraints

from assay.schema._data import FamilyMemberBase
from assay.schema._entity import check_labels
from assay.schema.base import (
    LABEL_VALUE_MAX_LENGTH,
    LABEL_VALUE_PATTERN,
    SUMMARY_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    AccountName,
    LabelKey,
    LabelValue,
    SchemaModel,
    TagName,
    is_reserved_label_key,
)

__all__ = [
    "DocumentationEditRequest",
    "EntityCreateRequest",
    "FamilyMembersEditRequest",
    "LabelsEditRequest",
    "MergePatchRequest",
    "RequestBase",
    "RequestModel",
    "lacks_account",
]

_ACCOUNT_RE = re.compile(LABEL_VALUE_PATTERN)


class RequestModel(SchemaModel):
    """Base of every request: datetimes must carry a timezone, and :meth:`to_wire` leaves out
    the fields that were not set."""

    @pydantic.field_validator("*", mode="after")
    @classmethod
    def _datetimes_have_timezone(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError(
                f"{info.field_name}: {value.isoformat()!r} has no timezone; pass a "
                "timezone-aware datetime, e.g. datetime.now(timezone.utc)"
            )
        return value

    def model_dump(  # type: ignore[override]
        self,
        *,
        by_alias: bool = True,
        exclude_none: bool = True,
        exclude_unset: bool = True,
        **kwargs: Any,
    ) -> dict[str, Any]:
        return super().model_dump(
            by_alias=by_alias, exclude_none=exclude_none, exclude_unset=exclude_unset, **kwargs
        )

    def model_dump_json(  # type: ignore[override]
        self,
        *,
        by_alias: bool = True,
        exclude_none: bool = True,
        exclude_unset: bool = True,
        **kwargs: Any,
    ) -> str:
        return super().model_dump_json(
            by_alias=by_alias, exclude_none=exclude_none, exclude_unset=exclude_unset, **kwargs
        )


class RequestBase(RequestModel):
    """Base of the create and edit requests: they carry a schema version."""

    schemaVersion: Literal["0.1"] = "0.1"
    """Version of the request schema."""


def _check_account(value: Any) -> Any:
    if isinstance(value, str) and (
        not value or len(value) > LABEL_VALUE_MAX_LENGTH or not _ACCOUNT_RE.match(value)
    ):
        raise ValueError(
            f"account: {value!r} is not a valid account name; use 1 to 63 letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit (e.g. 'my-team')"
        )
    return value


class EntityCreateRequest(RequestBase):
    """Base of the requests that create an entity."""

    account: Annotated[AccountName, pydantic.BeforeValidator(_check_account)]
    """The account that will own the entity."""


def lacks_account(request: Any) -> bool:
    """True for a create request given as a mapping that names no ``account`` (left out, or
    None): the platform fills in its default account before validating it (``LocalPlatform``:
    its own; ``Client`` and the server: the token's; ``docs/design/client.md``, "The default
    account"). A request model always names one: the field is required, as in the reference."""
    return isinstance(request, Mapping) and request.get("account") is None


class MergePatchRequest(RequestBase):
    """An edit with JSON Merge Patch meaning: ``None`` removes a value, a field left out keeps
    it. On the wire, fields set to ``None`` are sent as ``null``."""

    def model_dump(  # type: ignore[override]
        self,
        *,
        by_alias: bool = True,
        exclude_none: bool = False,
        exclude_unset: bool = True,
        **kwargs: Any,
    ) -> dict[str, Any]:
        return super().model_dump(
            by_alias=by_alias, exclude_none=exclude_none, exclude_unset=exclude_unset, **kwargs
        )

    def model_dump_json(  # type: ignore[override]
        self,
        *,
        by_alias: bool = True,
        exclude_none: bool = False,
        exclude_unset: bool = True,
        **kwargs: Any,
    ) -> str:
        return super().model_dump_json(
            by_alias=by_alias, exclude_none=exclude_none, exclude_unset=exclude_unset, **kwargs
        )


class DocumentationEditRequest(MergePatchRequest):
    """Edits an entity's documentation: fields given are set, fields given as ``None``
    removed, others kept.

    The reference client's body ``{"documentation": {...}}`` is accepted too.
    """

    title: Annotated[str, StringConstraints(max_length=TITLE_MAX_LENGTH)] | None = None
    """A short plain title (at most 140 characters); ``None`` removes it."""
    summary: Annotated[str, StringConstraints(max_length=SUMMARY_MAX_LENGTH)] | None = None
    """A brief Markdown summary (at most 280 characters); ``None`` removes it."""
    fullPage: str | None = None
    """Long-form Markdown documentation; ``None`` removes it."""

    @pydantic.model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("documentation"), dict):
            rest = {k: v for k, v in data.items() if k != "documentation"}
            return {**rest, **data["documentation"]}
        return data


def _check_label_edit(value: Any) -> Any:
    check_labels(value)
    if isinstance(value, dict):
        for key in value:
            if isinstance(key, str) and is_reserved_label_key(key):
                raise ValueError(
                    f"labels: key {key!r} is reserved for the platform (keys under "
                    "'assay.io/' and 'dyff.io/'); use a prefix of your own, e.g. "
                    f"'example.com/{key.split('/', 1)[-1]}'"
                )
    return value


class LabelsEditRequest(MergePatchRequest):
    """Edits an entity's labels: keys given are set, keys given as ``None`` removed, others
    kept."""

    labels: Annotated[
        dict[LabelKey, LabelValue | None], pydantic.BeforeValidator(_check_label_edit)
    ] = Field(default_factory=dict)
    """The labels to set (or remove, with ``None``); keys under ``assay.io/`` and
    ``dyff.io/`` are reserved."""


class FamilyMembersEditRequest(MergePatchRequest):
    """Edits a Family's members: tags given are set, tags given as ``None`` removed, others
    kept."""

    members: dict[TagName, FamilyMemberBase | None]
    """The members to set (or remove, with ``None``), by tag."""
