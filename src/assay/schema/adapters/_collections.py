"""Adapters over list-valued fields: ``ExplodeCollections`` (one row per element) and
``EmbedIndex`` (index fields added to each element)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import Field

from assay.schema.adapters._base import (
    BaseAdapter,
    Configuration,
    JSONObject,
    config_error,
    data_error,
    describe_keys,
    parse_configuration,
)
from assay.schema.adapters._expressions import JSONPath, TemplateCompiler

__all__ = ["EmbedIndex", "ExplodeCollections"]


class _CollectionsConfiguration(Configuration):
    collections: list[str] = Field(min_length=1)
    """The top-level list fields; in each object they must have the same length."""
    index: dict[str, str | None] = Field(default_factory=dict)
    """Index fields to add, by name: ``null`` numbers the elements 0, 1, ...; a JSONPath
    query (against the whole input object) gives a list of values, one per element."""


class _Collections(BaseAdapter):
    """Shared by the two kinds: configuration, and the lists and index values of an item."""

    def __init__(self, configuration: Mapping[str, Any] | None = None) -> None:
        super().__init__(configuration)
        config = parse_configuration(self.kind, _CollectionsConfiguration, configuration)
        if len(set(config.collections)) != len(config.collections):
            raise config_error(
                self.kind, "collections", f"names a field twice: {config.collections}"
            )
        compiler = TemplateCompiler(self.kind)
        self.collections: list[str] = config.collections
        self.index: list[tuple[str, JSONPath | None]] = []
        for name, query in config.index.items():
            if name in self.collections:
                raise config_error(
                    self.kind,
                    f"index.{name}",
                    f"{name!r} is also a collection; give the index another name",
                )
            path = None if query is None else compiler.query(query, f"index.{name}")
            self.index.append((name, path))

    def _lists(self, item: JSONObject) -> tuple[list[list[Any]], int]:
        lists: list[list[Any]] = []
        for name in self.collections:
            value = item.get(name) if isinstance(item, dict) else None
            if not isinstance(value, list):
                problem = (
                    f"the field {name!r} is a {type(value).__name__}, not a list"
                    if isinstance(item, dict) and name in item
                    else f"the item has no field {name!r}; {describe_keys(item)}"
                )
                raise data_error(self.kind, problem, field=name)
            lists.append(value)
        length = len(lists[0])
        if any(len(values) != length for values in lists):
            lengths = ", ".join(
                f"{n}={len(v)}" for n, v in zip(self.collections, lists, strict=True)
            )
            raise data_error(
                self.kind,
                f"the collections must have equal lengths, got {lengths}",
                field=self.collections[0],
            )
        return lists, length

    def _index_values(self, item: JSONObject, length: int) -> list[Iterable[Any]]:
        columns: list[Iterable[Any]] = []
        for name, path in self.index:
            if path is None:
                columns.append(range(length))
                continue
            values = path.find(item)
            if len(values) != length:
                raise data_error(
                    self.kind,
                    f"index {name!r}: the query {path.text!r} gave {len(values)} values for "
                    f"collections of length {length}; it must give one per element "
                    "(query the list's elements, e.g. '$.ranks[*]')",
                    field=name,
                )
            columns.append(values)
        return columns


class ExplodeCollections(_Collections):
    """Turn each object into one row per element of its list fields, zipped together.

    Configuration: ``{"collections": [name, ...], "index": {name: null | "$.query"}}``.
    ``{"numbers": [1, 2], "squares": [1, 4], "x": "a"}`` with ``collections`` ``["numbers",
    "squares"]`` gives ``{"x": "a", "numbers": 1, "squares": 1}`` and
    ``{"x": "a", "numbers": 2, "squares": 4}``. The other fields are copied into every row;
    index fields number the rows (``null``) or take their values from a query that gives one
    value per element. Lists of unequal length are an error naming the fields and lengths; empty
    lists give no rows.
    """

    def __call__(self, stream: Iterable[JSONObject]) -> Iterator[JSONObject]:
        exploded = frozenset(self.collections)
        names = [*self.collections, *(name for name, _ in self.index)]
        for item in stream:
            lists, length = self._lists(item)
            columns = [*lists, *self._index_values(item, length)]
            rest = {key: value for key, value in item.items() if key not in exploded}
            for row in zip(*columns, strict=False):
                out = rest.copy()
                out.update(zip(names, row, strict=True))
                yield out


class EmbedIndex(_Collections):
    """Add index fields to each element of the named list fields, whose elements are objects.

    Configuration: ``{"collections": [name, ...], "index": {name: null | "$.query"}}``.
    ``{"choices": [{"label": "a"}, {"label": "b"}], "ranks": [1, 0]}`` with
    ``{"collections": ["choices"], "index": {"order": null, "rank": "$.ranks[*]"}}`` gives
    ``{"choices": [{"label": "a", "order": 0, "rank": 1}, {"label": "b", "order": 1,
    "rank": 0}], "ranks": [1, 0]}``.
    """

    def __init__(self, configuration: Mapping[str, Any] | None = None) -> None:
        super().__init__(configuration)
        if not self.index:
            raise config_error(self.kind, "index", "name at least one index field to embed")

    def __call__(self, stream: Iterable[JSONObject]) -> Iterator[JSONObject]:
        names = [name for name, _ in self.index]
        for item in stream:
            lists, length = self._lists(item)
            columns = [list(values) for values in self._index_values(item, length)]
            out = dict(item)
            for collection, elements in zip(self.collections, lists, strict=True):
                embedded: list[dict[str, Any]] = []
                for position, element in enumerate(elements):
                    if not isinstance(element, dict):
                        raise data_error(
                            self.kind,
                            f"{collection}[{position}] is a {type(element).__name__}; index "
                            "fields can only be embedded in objects",
                            field=collection,
                        )
                    element = dict(element)
                    for name, column in zip(names, columns, strict=True):
                        element[name] = column[position]
                    embedded.append(element)
                out[collection] = embedded
            yield out
