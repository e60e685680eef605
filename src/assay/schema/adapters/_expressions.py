"""Value expressions: JSONPath queries, the ``$$`` escape, templates and ``$compute`` pipelines.

Everything is compiled once, when the adapter is created, into plain Python closures; nothing
is parsed per item. JSONPath queries made only of names and indexes (``$.choices[0].text``, the
common case) are evaluated by a direct walk over the object; other queries (wildcards, filters,
slices) by ``jsonpath_ng``, with the same results. ``jsonpath_ng`` is imported when the first
query is compiled, not when :mod:`assay.schema.adapters` is imported.
"""

from __future__ import annotations

import copy
import functools
import operator
import re
from collections.abc import Callable
from typing import Any, ClassVar

from assay.schema.adapters._base import (
    Configuration,
    config_error,
    data_error,
    describe_keys,
    parse_configuration,
)

__all__ = ["JSONPath", "TemplateCompiler"]

Evaluate = Callable[[Any], Any]
_VALUE_KEYS = ("$literal", "$scalar", "$list")


@functools.cache
def _jsonpath_parse() -> Callable[[str], Any]:
    from jsonpath_ng.ext.parser import parse

    return parse


class _Every:
    """The ``[*]`` step: every element of a list, every value of an object."""


_EVERY = _Every()
_Step = str | int | _Every


def _simple_steps(expr: Any) -> tuple[_Step, ...] | None:
    """The steps of a query made only of ``$``, ``.name``, ``['name']``, ``[i]`` and ``[*]``;
    ``None`` for any other query."""
    from jsonpath_ng.jsonpath import Child, Fields, Index, Root, This, Wildcard

    nodes: list[Any] = []
    while isinstance(expr, Child):
        nodes.append(expr.right)
        expr = expr.left
    nodes.append(expr)
    nodes.reverse()
    if isinstance(nodes[0], Root | This):
        nodes = nodes[1:]
    steps: list[_Step] = []
    for node in nodes:
        if type(node) is Fields and len(node.fields) == 1 and node.fields[0] != "*":
            steps.append(node.fields[0])
        elif type(node) is Index and len(node.indices) == 1:
            steps.append(node.indices[0])
        elif type(node) is Wildcard:
            steps.append(_EVERY)
        else:
            return None
    return tuple(steps)


def _walk_one(value: Any, steps: tuple[_Step, ...]) -> list[Any]:
    """Follow names and indexes: at most one match."""
    for step in steps:
        if isinstance(step, str):
            if not isinstance(value, dict) or step not in value:
                return []
            value = value[step]
        else:
            assert isinstance(step, int)
            if not isinstance(value, list | tuple) or not -len(value) <= step < len(value):
                return []
            value = value[step]
    return [value]


def _walk_all(value: Any, steps: tuple[_Step, ...]) -> list[Any]:
    """Follow names, indexes and wildcards: any number of matches, in document order."""
    values = [value]
    for step in steps:
        found: list[Any] = []
        if isinstance(step, _Every):
            for v in values:
                if isinstance(v, list | tuple):
                    found.extend(v)
                elif isinstance(v, dict):
                    found.extend(v.values())
        elif isinstance(step, str):
            found = [v[step] for v in values if isinstance(v, dict) and step in v]
        else:
            found = [
                v[step] for v in values if isinstance(v, list | tuple) and -len(v) <= step < len(v)
            ]
        values = found
    return values


class JSONPath:
    """A compiled JSONPath query."""

    __slots__ = ("_expr", "_steps", "_walk", "text")

    def __init__(self, text: str) -> None:
        """Compile ``text``; a ``ValueError`` says why it is not a valid query."""
        try:
            self._expr = _jsonpath_parse()(text)
        except Exception as exc:  # jsonpath_ng raises several unrelated types for bad syntax
            raise ValueError(f"invalid JSONPath {text!r}: {exc}") from None
        self.text = text
        steps = _simple_steps(self._expr)
        self._steps: tuple[_Step, ...] = steps or ()
        self._walk: Callable[[Any, tuple[_Step, ...]], list[Any]] | None = None
        if steps is not None:
            self._walk = _walk_all if _EVERY in steps else _walk_one

    def find(self, data: Any) -> list[Any]:
        """Every value the query matches in ``data``."""
        if self._walk is None:
            return [match.value for match in self._expr.find(data)]
        return self._walk(data, self._steps)

    def __repr__(self) -> str:
        return f"JSONPath({self.text!r})"


def _is_query(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("$") and not value.startswith("$$")


def _join(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


# ----------------------------------------------------------------------------------------------
# $func steps


def _regex(kind: str, where: str, pattern: str, flags: int) -> re.Pattern[str]:
    try:
        return re.compile(pattern, flags)
    except (re.error, ValueError) as exc:
        raise config_error(kind, f"{where}.pattern", f"invalid regular expression: {exc}") from None


class _Function(Configuration):
    """Parameters of a ``$func`` step; ``compile`` makes the step."""

    name: ClassVar[str]

    def compile(self, kind: str, where: str) -> Evaluate:
        raise NotImplementedError


def _guarded(kind: str, where: str, name: str, fn: Evaluate, *, text: bool) -> Evaluate:
    """``fn``, with bad input turned into an error naming the step."""

    def evaluate(value: Any) -> Any:
        if text and not isinstance(value, str):
            raise data_error(
                kind, f"{where}: $func {name!r} expects a string, got {type(value).__name__}"
            )
        try:
            return fn(value)
        except (TypeError, ValueError, IndexError, re.error) as exc:
            raise data_error(
                kind, f"{where}: $func {name!r} failed on {value!r:.60}: {exc}"
            ) from None

    return evaluate


class _FindAll(_Function):
    """``re.findall(pattern, value, flags)``."""

    name = "findall"
    pattern: str
    """A regular expression."""
    flags: int = 0
    """``re`` flags, as an integer."""

    def compile(self, kind: str, where: str) -> Evaluate:
        regex = _regex(kind, where, self.pattern, self.flags)
        return _guarded(kind, where, self.name, regex.findall, text=True)


class _Search(_Function):
    """The ``group`` of ``re.search(pattern, value, flags)``, or ``default`` if no match."""

    name = "search"
    pattern: str
    """A regular expression."""
    flags: int = 0
    """``re`` flags, as an integer."""
    group: int = 0
    """The group to return; 0 is the whole match."""
    default: str | None = None
    """The value when nothing matches."""

    def compile(self, kind: str, where: str) -> Evaluate:
        regex = _regex(kind, where, self.pattern, self.flags)
        if not 0 <= self.group <= regex.groups:
            raise config_error(
                kind,
                f"{where}.group",
                f"the pattern has {regex.groups} group(s), so group must be 0..{regex.groups}, "
                f"got {self.group}",
            )
        group, default = self.group, self.default

        def search(value: str) -> str | None:
            match = regex.search(value)
            return default if match is None else match.group(group)

        return _guarded(kind, where, self.name, search, text=True)


class _Split(_Function):
    """``re.split(pattern, value, maxsplit, flags)``."""

    name = "split"
    pattern: str
    """A regular expression."""
    maxsplit: int = 0
    """At most this many splits; 0 means no limit."""
    flags: int = 0
    """``re`` flags, as an integer."""

    def compile(self, kind: str, where: str) -> Evaluate:
        regex, maxsplit = _regex(kind, where, self.pattern, self.flags), self.maxsplit
        return _guarded(kind, where, self.name, lambda v: regex.split(v, maxsplit), text=True)


class _Sub(_Function):
    """``re.sub(pattern, repl, value, count, flags)``."""

    name = "sub"
    pattern: str
    """A regular expression."""
    repl: str
    """The replacement; may refer to groups (``\\1``)."""
    count: int = 0
    """At most this many replacements; 0 means no limit."""
    flags: int = 0
    """``re`` flags, as an integer."""

    def compile(self, kind: str, where: str) -> Evaluate:
        regex, repl, count = _regex(kind, where, self.pattern, self.flags), self.repl, self.count
        return _guarded(kind, where, self.name, lambda v: regex.sub(repl, v, count), text=True)


class _Join(_Function):
    """``separator.join(value)`` for a list of strings."""

    name = "join"
    separator: str = ""
    """The string placed between the items."""

    def compile(self, kind: str, where: str) -> Evaluate:
        return _guarded(kind, where, self.name, self.separator.join, text=False)


class _List(_Function):
    """``list(value)``: the characters of a string, a copy of a list."""

    name = "list"

    def compile(self, kind: str, where: str) -> Evaluate:
        return _guarded(kind, where, self.name, list, text=False)


class _Reduce(_Function):
    """The items of a non-empty list combined with ``+`` (sum, concatenation)."""

    name = "reduce"

    def compile(self, kind: str, where: str) -> Evaluate:
        return _guarded(
            kind, where, self.name, lambda v: functools.reduce(operator.add, v), text=False
        )


_FUNCTIONS: dict[str, type[_Function]] = {
    f.name: f for f in (_FindAll, _Join, _List, _Reduce, _Search, _Split, _Sub)
}


# ----------------------------------------------------------------------------------------------
# Templates


class TemplateCompiler:
    """Compiles templates and value expressions for the adapter ``kind`` (used in errors).

    In a template, objects and lists give the shape of the output; a string starting with
    ``$`` is a JSONPath query that must match exactly one value; ``$$`` at the start of a
    string (or an object key) stands for a literal ``$``; other values are literals; an object
    ``{"$compute": step or [steps]}`` computes one value (see :class:`TransformJSON`).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def query(self, text: Any, where: str) -> JSONPath:
        """Compile the JSONPath ``text`` found at configuration key ``where``."""
        if not isinstance(text, str):
            raise config_error(self.kind, where, f"expected a JSONPath query string, got {text!r}")
        try:
            return JSONPath(text)
        except ValueError as exc:
            raise config_error(self.kind, where, str(exc)) from None

    def scalar(self, path: JSONPath, where: str) -> Evaluate:
        """Evaluate ``path``, requiring exactly one match."""
        kind = self.kind

        def evaluate(item: Any) -> Any:
            found = path.find(item)
            if len(found) == 1:
                return found[0]
            if not found:
                raise data_error(
                    kind,
                    f"{where or 'output'}: the query {path.text!r} matched nothing; "
                    f"{describe_keys(item)}",
                    field=where,
                )
            raise data_error(
                kind,
                f"{where or 'output'}: the query {path.text!r} matched {len(found)} values where "
                f'one was expected; for a list, use {{"$compute": {{"$list": {path.text!r}}}}}',
                field=where,
            )

        return evaluate

    def template(self, template: Any, where: str = "") -> Evaluate:
        """Compile a template (a JSON value) into ``item -> output``."""
        if isinstance(template, dict):
            if "$compute" in template:
                if len(template) != 1:
                    raise config_error(
                        self.kind,
                        where,
                        f"'$compute' must be the only key of its object, found {list(template)}",
                    )
                return self.compute(template["$compute"], _join(where, "$compute"))
            fields: list[tuple[str, Evaluate]] = []
            for key, value in template.items():
                if not isinstance(key, str):
                    raise config_error(self.kind, where, f"object keys must be strings: {key!r}")
                out_key = key
                if key.startswith("$$"):
                    out_key = key[1:]
                elif key.startswith("$"):
                    raise config_error(
                        self.kind,
                        _join(where, key),
                        "keys starting with '$' are reserved; write '$$' for a literal '$'",
                    )
                fields.append((out_key, self.template(value, _join(where, key))))
            return lambda item: {key: evaluate(item) for key, evaluate in fields}
        if isinstance(template, list):
            items = [self.template(value, _join(where, i)) for i, value in enumerate(template)]
            return lambda item: [evaluate(item) for evaluate in items]
        if isinstance(template, str) and template.startswith("$"):
            if template.startswith("$$"):
                literal = template[1:]
                return lambda _item: literal
            return self.scalar(self.query(template, where), where)
        if template is None or isinstance(template, str | int | float | bool):
            return lambda _item: template
        raise config_error(
            self.kind, where, f"{template!r} is not a JSON value (a {type(template).__name__})"
        )

    def compute(self, steps: Any, where: str) -> Evaluate:
        """Compile a ``$compute`` pipeline: the first step sees the input item, each later step
        the previous step's result."""
        if isinstance(steps, dict):
            steps = [steps]
        if not isinstance(steps, list) or not steps:
            raise config_error(
                self.kind, where, "expected a step object or a non-empty list of step objects"
            )
        compiled = [self._step(step, _join(where, i)) for i, step in enumerate(steps)]
        if len(compiled) == 1:
            return compiled[0]

        def evaluate(item: Any) -> Any:
            value = item
            for step in compiled:
                value = step(value)
            return value

        return evaluate

    def _step(self, step: Any, where: str) -> Evaluate:
        if not isinstance(step, dict):
            raise config_error(
                self.kind,
                where,
                f"a $compute step is an object with one of {list(_VALUE_KEYS)} or '$func', "
                f"got {step!r}",
            )
        if any(key in step for key in _VALUE_KEYS):
            return self._value(step, where)
        if "$func" not in step:
            raise config_error(
                self.kind,
                where,
                f"a $compute step needs one of {list(_VALUE_KEYS)} or '$func', found {list(step)}",
            )
        name = step["$func"]
        function = _FUNCTIONS.get(name) if isinstance(name, str) else None
        if function is None:
            raise config_error(
                self.kind,
                _join(where, "$func"),
                f"unknown function {name!r}; the functions are {sorted(_FUNCTIONS)}",
            )
        params = {key: value for key, value in step.items() if key != "$func"}
        return parse_configuration(self.kind, function, params, prefix=where).compile(
            self.kind, where
        )

    def _value(self, step: dict[str, Any], where: str) -> Evaluate:
        """A value step: exactly one of ``$literal``, ``$scalar``, ``$list``."""
        if len(step) != 1:
            raise config_error(
                self.kind,
                where,
                f"a value step has exactly one of {list(_VALUE_KEYS)} and nothing else, "
                f"found {list(step)}",
            )
        ((key, value),) = step.items()
        if key not in _VALUE_KEYS:
            raise config_error(
                self.kind, where, f"expected one of {list(_VALUE_KEYS)} as the key, found {key!r}"
            )
        where = _join(where, key)
        if key == "$literal":
            if isinstance(value, dict | list):
                return lambda _item: copy.deepcopy(value)
            return lambda _item: value
        if key == "$list" and isinstance(value, list):
            parts: list[Evaluate] = []
            for i, part in enumerate(value):
                if not isinstance(part, dict):
                    raise config_error(
                        self.kind,
                        _join(where, i),
                        f"the items of a $list of expressions must be value steps, got {part!r}",
                    )
                parts.append(self._value(part, _join(where, i)))
            return lambda item: [evaluate(item) for evaluate in parts]
        if not _is_query(value):
            raise config_error(
                self.kind,
                where,
                f"{key} expects a JSONPath query (a string starting with '$'), got {value!r}; "
                "use $literal for a constant",
            )
        path = self.query(value, where)
        if key == "$scalar":
            return self.scalar(path, where)
        return path.find
