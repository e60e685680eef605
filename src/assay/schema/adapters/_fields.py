"""Adapters over the top-level fields of each object: ``Select``, ``Drop``, ``Rename``,
``FlattenHierarchy``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NoReturn

from pydantic import Field

from assay import errors
from assay.schema.adapters._base import (
    BaseAdapter,
    Configuration,
    JSONObject,
    config_error,
    data_error,
    describe_keys,
    parse_configuration,
)
from assay.schema.adapters._json import flatten_object

__all__ = ["Drop", "FlattenHierarchy", "Rename", "Select"]


class _FieldsConfiguration(Configuration):
    fields: list[str]
    """The names of top-level fields."""


class Select(BaseAdapter):
    """Keep only the named top-level fields, in the order named: ``{"fields": [name, ...]}``.

    A named field that an object lacks is an error.
    """

    def __init__(self, configuration: Mapping[str, Any] | None = None) -> None:
        super().__init__(configuration)
        self.fields = parse_configuration(self.kind, _FieldsConfiguration, configuration).fields

    def __call__(self, stream: Iterable[JSONObject]) -> Iterator[JSONObject]:
        fields = self.fields
        for item in stream:
            try:
                yield {field: item[field] for field in fields}
            except KeyError as exc:
                raise data_error(
                    self.kind,
                    f"the item has no field {exc.args[0]!r} to select; {describe_keys(item)}",
                    field=str(exc.args[0]),
                ) from None


class Drop(BaseAdapter):
    """Remove the named top-level fields: ``{"fields": [name, ...]}``. Fields that an object
    lacks are ignored."""

    def __init__(self, configuration: Mapping[str, Any] | None = None) -> None:
        super().__init__(configuration)
        fields = parse_configuration(self.kind, _FieldsConfiguration, configuration).fields
        self.fields = frozenset(fields)

    def __call__(self, stream: Iterable[JSONObject]) -> Iterator[JSONObject]:
        dropped = self.fields
        for item in stream:
            yield {key: value for key, value in item.items() if key not in dropped}


class Rename(BaseAdapter):
    """Rename top-level fields: the configuration maps old names to new ones,
    ``{"old": "new", ...}``.

    Renames happen all at once, so ``{"a": "b", "b": "a"}`` swaps two fields, and a renamed
    field keeps its position. An object that lacks a field to rename is an error, and so is a
    new name that is already taken by a field that is not being renamed.
    """

    def __init__(self, configuration: Mapping[str, Any] | None = None) -> None:
        super().__init__(configuration)
        mapping = self.configuration or {}
        targets: dict[str, str] = {}
        for old, new in mapping.items():
            if not isinstance(new, str) or not new:
                raise config_error(
                    self.kind, old, f"the new name must be a non-empty string, got {new!r}"
                )
            if new in targets:
                raise config_error(
                    self.kind,
                    old,
                    f"{targets[new]!r} and {old!r} are both renamed to {new!r}; "
                    "pick distinct names",
                )
            targets[new] = old
        self.mapping: dict[str, str] = dict(mapping)

    def __call__(self, stream: Iterable[JSONObject]) -> Iterator[JSONObject]:
        mapping = self.mapping
        for item in stream:
            renamed = {mapping.get(key, key): value for key, value in item.items()}
            if len(renamed) != len(item) or not mapping.keys() <= item.keys():
                self._explain(item)
            yield renamed

    def _explain(self, item: JSONObject) -> NoReturn:
        missing = [old for old in self.mapping if old not in item]
        if missing:
            raise data_error(
                self.kind,
                f"the item has no field {missing[0]!r} to rename; {describe_keys(item)}",
                field=missing[0],
            )
        taken = next(
            new for old, new in self.mapping.items() if new in item and new not in self.mapping
        )
        raise data_error(
            self.kind,
            f"cannot rename to {taken!r}: the item already has a field {taken!r}; drop it first",
            field=taken,
        )


class _FlattenConfiguration(Configuration):
    fields: list[str] | None = None
    """The top-level fields to flatten; all of the object if left out or empty."""
    depth: int | None = Field(default=None, ge=0)
    """How many levels below the top to expand (0 expands nothing); unlimited if left out."""
    addPrefix: bool = True
    """Name each leaf by its path (``a.b.c``) rather than by its last name (``c``)."""


class FlattenHierarchy(BaseAdapter):
    """Flatten nested objects into one key per leaf: ``{"a": {"b": 1}}`` becomes
    ``{"a.b": 1}``.

    The configuration is optional: ``{"fields": [name, ...], "depth": n, "addPrefix": bool}``.
    With ``fields``, only those fields are flattened (each in its place); ``depth`` limits how
    many levels are expanded; ``addPrefix`` (default true) names a leaf by its dotted path,
    otherwise by its last name. Lists are leaves. Two leaves with the same name are an error
    rather than one silently overwriting the other.
    """

    configuration_optional = True

    def __init__(self, configuration: Mapping[str, Any] | None = None) -> None:
        super().__init__(configuration)
        config = parse_configuration(self.kind, _FlattenConfiguration, configuration)
        self.fields = frozenset(config.fields or ())
        self.depth = config.depth
        self.add_prefix = config.addPrefix

    def _flatten(self, obj: dict[str, Any]) -> dict[str, Any]:
        try:
            return flatten_object(obj, max_depth=self.depth, add_prefix=self.add_prefix)
        except errors.ValidationError as exc:
            raise data_error(self.kind, exc.message, field=exc.field) from None

    def __call__(self, stream: Iterable[JSONObject]) -> Iterator[JSONObject]:
        fields = self.fields
        for item in stream:
            if not fields:
                yield self._flatten(item)
                continue
            missing = fields.difference(item)
            if missing:
                name = sorted(missing)[0]
                raise data_error(
                    self.kind,
                    f"the item has no field {name!r} to flatten; {describe_keys(item)}",
                    field=name,
                )
            out: dict[str, Any] = {}
            for key, value in item.items():
                parts = self._flatten({key: value}) if key in fields else {key: value}
                for part, part_value in parts.items():
                    if part in out:
                        raise data_error(
                            self.kind,
                            f"flattening gives the key {part!r}, which the item already has; "
                            "rename one of them first",
                            field=part,
                        )
                    out[part] = part_value
            yield out
