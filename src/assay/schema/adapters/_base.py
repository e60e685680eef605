"""What every adapter shares: the protocol, the base class, and configuration parsing that
turns a bad configuration into an error naming the adapter kind and the key."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar, Protocol, Self, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict

from assay import errors

__all__ = [
    "Adapter",
    "BaseAdapter",
    "Configuration",
    "JSONObject",
    "config_error",
    "data_error",
    "describe_keys",
    "parse_configuration",
]

#: A JSON object: what adapters consume and produce.
JSONObject = dict[str, Any]


class Adapter(Protocol):
    """Transforms a stream of JSON objects into another stream of JSON objects."""

    def __call__(self, stream: Iterable[JSONObject]) -> Iterator[JSONObject]: ...


class BaseAdapter:
    """The base of Assay's adapter kinds. The kind is the class name."""

    kind: ClassVar[str] = "BaseAdapter"
    #: True for kinds whose configuration may be left out.
    configuration_optional: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind = cls.__name__

    def __init__(self, configuration: Mapping[str, Any] | None = None) -> None:
        if configuration is None and not self.configuration_optional:
            raise errors.ValidationError(
                f"{self.kind} adapter: a configuration is required; see the documentation "
                f"of assay.schema.adapters.{self.kind} for its keys",
                entity=self.kind,
                field="configuration",
            )
        if configuration is not None and not isinstance(configuration, Mapping):
            raise errors.ValidationError(
                f"{self.kind} adapter: the configuration must be a JSON object, got "
                f"{type(configuration).__name__} {configuration!r}",
                entity=self.kind,
                field="configuration",
            )
        self.configuration: dict[str, Any] | None = (
            None if configuration is None else copy.deepcopy(dict(configuration))
        )

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, Any] | None) -> Self:
        """The adapter for a spec's ``configuration`` (what ``create_adapter`` calls)."""
        return cls(configuration)

    def to_spec(self) -> dict[str, Any]:
        """The ``{"kind", "configuration"}`` spec that creates this adapter again."""
        spec: dict[str, Any] = {"kind": self.kind}
        if self.configuration is not None:
            spec["configuration"] = copy.deepcopy(self.configuration)
        return spec

    def __call__(self, stream: Iterable[JSONObject]) -> Iterator[JSONObject]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{self.kind}({self.configuration!r})"


class Configuration(BaseModel):
    """The typed configuration of an adapter kind: unknown keys refused, docstrings as help."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


C = TypeVar("C", bound=Configuration)


def _key(loc: tuple[int | str, ...], prefix: str) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def config_error(kind: str, key: str, problem: str) -> errors.ValidationError:
    """A ``ValidationError`` for one bad configuration key of an adapter kind."""
    return errors.ValidationError(
        f"{kind} adapter: configuration key {key!r}: {problem}",
        entity=kind,
        field=f"configuration.{key}" if key else "configuration",
    )


def data_error(kind: str, problem: str, *, field: str | None = None) -> errors.ValidationError:
    """A ``ValidationError`` for an input item that an adapter cannot transform."""
    return errors.ValidationError(f"{kind} adapter: {problem}", entity=kind, field=field)


def describe_keys(item: Any) -> str:
    """A short description of an item's keys, for error messages."""
    if not isinstance(item, dict):
        return f"the item is a {type(item).__name__}, not a JSON object"
    keys = list(item)
    shown = ", ".join(repr(k) for k in keys[:20])
    more = f", ... ({len(keys)} in all)" if len(keys) > 20 else ""
    return f"the item's fields are [{shown}{more}]"


def parse_configuration(kind: str, model: type[C], configuration: Any, *, prefix: str = "") -> C:
    """Validate ``configuration`` as ``model``; errors name ``kind`` and the key (under
    ``prefix``), say what was expected and list the known keys."""
    if configuration is None:
        configuration = {}
    if not isinstance(configuration, Mapping):
        raise config_error(
            kind, prefix, f"expected a JSON object, got {type(configuration).__name__}"
        )
    try:
        return model.model_validate(dict(configuration))
    except pydantic.ValidationError as exc:
        problems: list[str] = []
        details: list[dict[str, Any]] = []
        for err in exc.errors(include_url=False):
            key = _key(tuple(err["loc"]), prefix)
            name = str(err["loc"][0]) if err["loc"] else ""
            if err["type"] == "missing":
                doc = model.model_fields[name].description if name in model.model_fields else ""
                problems.append(f"configuration key {key!r} is required ({doc})")
            elif err["type"] == "extra_forbidden":
                problems.append(
                    f"unknown configuration key {key!r}; the keys of {kind} are "
                    f"{list(model.model_fields)}"
                )
            else:
                shown = repr(err.get("input"))
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                problems.append(f"configuration key {key!r}: {err['msg']} (got {shown})")
            details.append({"field": key, "rule": err["type"], "message": err["msg"]})
        first = details[0]["field"] if details else prefix
        raise errors.ValidationError(
            f"{kind} adapter: " + "; ".join(problems),
            entity=kind,
            field=f"configuration.{first}",
            errors=details,
        ) from None
