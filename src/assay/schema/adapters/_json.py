"""Helpers over JSON structures: apply a function to every leaf, flatten nested objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from assay import errors

__all__ = ["flatten_object", "map_structure"]


def map_structure(fn: Callable[[Any], Any], data: Any) -> Any:
    """A new structure shaped like ``data`` (nested dicts and lists) whose every leaf is
    ``fn(leaf)``."""
    if isinstance(data, dict):
        return {key: map_structure(fn, value) for key, value in data.items()}
    if isinstance(data, list):
        return [map_structure(fn, value) for value in data]
    return fn(data)


def flatten_object(
    obj: dict[str, Any], *, max_depth: int | None = None, add_prefix: bool = True
) -> dict[str, Any]:
    """A flat object with one key per leaf of ``obj``.

    With ``add_prefix`` (the default) a leaf's key is its path, ``"a.b.c"``; without, it is the
    last name, ``"c"``. Lists are leaves, even lists of objects. ``max_depth`` limits how many
    levels below the top are expanded: ``0`` leaves ``obj`` as it is, ``1`` expands the
    objects directly under the top, and so on. An empty nested object has no leaves, so it
    disappears. Two leaves that would get the same key are an error, never a silent overwrite.
    """
    if max_depth is not None and (isinstance(max_depth, bool) or max_depth < 0):
        raise errors.ValidationError(
            f"max_depth must be a non-negative integer or None, got {max_depth!r}",
            field="max_depth",
        )
    if not isinstance(obj, dict):
        raise errors.ValidationError(
            f"only JSON objects can be flattened, got {type(obj).__name__}", field="obj"
        )
    flat: dict[str, Any] = {}

    def visit(value: Any, path: tuple[str, ...]) -> None:
        if isinstance(value, dict) and (max_depth is None or len(path) <= max_depth):
            for key, child in value.items():
                visit(child, (*path, str(key)))
            return
        dotted = ".".join(path)
        key = dotted if add_prefix else path[-1]
        if key in flat:
            raise errors.ValidationError(
                f"flattening gives the key {key!r} twice (the second time from {dotted!r}); "
                "flatten with prefixes (addPrefix) or fewer levels (depth)",
                field=key,
            )
        flat[key] = value

    visit(obj, ())
    return flat
