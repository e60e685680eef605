"""The base model of every Assay schema type, and the constrained string types they share.

Wire rules (see ``docs/design/wire-format.md``):

- fields serialise by alias (``schema_`` is ``schema`` on the wire, ``index`` is ``_index_``);
- unset optional fields (``None``) are omitted on the wire;
- unknown fields are refused (``extra="forbid"``), so a typo is an error, not a silent no-op;
- datetimes are UTC: naive datetimes in entities are taken as UTC, aware ones converted;
  requests refuse naive datetimes (see :class:`RequestModel`);
- Assay's extensions (fields and values the reference schema lacks) are on Assay's wire
  (``to_wire()``, what is stored and what Assay's client asks for) and left out of the
  reference's (``to_wire(reference=True)``, what the server answers other clients), so the
  reference's own models, which refuse unknown fields, parse every answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from assay import errors

__all__ = [
    "ANNOTATION_KEY_MAX_LENGTH",
    "EXTENSIONS_HEADER",
    "IDENTIFIER_PATTERN",
    "LABEL_KEY_MAX_LENGTH",
    "LABEL_KEY_PATTERN",
    "LABEL_VALUE_MAX_LENGTH",
    "LABEL_VALUE_PATTERN",
    "QUANTITY_PATTERN",
    "REFERENCE_WIRE",
    "RESERVED_LABEL_PREFIXES",
    "SUMMARY_MAX_LENGTH",
    "TITLE_MAX_LENGTH",
    "AccountName",
    "EntityID",
    "Identifier",
    "LabelKey",
    "LabelValue",
    "Quantity",
    "SchemaModel",
    "TagName",
    "is_reference_wire",
    "is_reserved_label_key",
    "reference_wire",
    "validate_model",
]

#: A DNS label with an optional DNS-domain prefix, e.g. ``my-key``, ``example.com/key_0``.
LABEL_KEY_PATTERN = (
    r"^([a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*/)?"
    r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?$"
)
LABEL_KEY_MAX_LENGTH = 317
ANNOTATION_KEY_MAX_LENGTH = 253
#: Kubernetes label-value rules: alphanumerics separated by ``.``, ``-`` or ``_``; may be empty.
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LABEL_VALUE_MAX_LENGTH = 63
#: Label keys under these prefixes belong to the platform.
RESERVED_LABEL_PREFIXES = ("assay.io/", "dyff.io/")
#: Kubernetes quantity notation, e.g. ``8Gi``, ``500m``, ``1e3``.
QUANTITY_PATTERN = r"^([+-]?)(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
#: A Python-style identifier (score names, curve names).
IDENTIFIER_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
IDENTIFIER_MAX_LENGTH = 127
TITLE_MAX_LENGTH = 140
SUMMARY_MAX_LENGTH = 280
#: 32 lowercase hex digits (``uuid4().hex``).
ENTITY_ID_PATTERN = r"^[0-9a-f]{32}$"
TAG_NAME_PATTERN = r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$"

LabelKey = Annotated[
    str, StringConstraints(pattern=LABEL_KEY_PATTERN, max_length=LABEL_KEY_MAX_LENGTH)
]
LabelValue = Annotated[
    str, StringConstraints(pattern=LABEL_VALUE_PATTERN, max_length=LABEL_VALUE_MAX_LENGTH)
]
#: Account names follow the label-value rules, and may not be empty.
AccountName = Annotated[
    str,
    StringConstraints(pattern=LABEL_VALUE_PATTERN, min_length=1, max_length=LABEL_VALUE_MAX_LENGTH),
]
Quantity = Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN)]
Identifier = Annotated[
    str, StringConstraints(pattern=IDENTIFIER_PATTERN, max_length=IDENTIFIER_MAX_LENGTH)
]
EntityID = Annotated[str, StringConstraints(pattern=ENTITY_ID_PATTERN)]
TagName = Annotated[str, StringConstraints(pattern=TAG_NAME_PATTERN, max_length=128)]

_RESERVED_RE = re.compile(r"^([a-zA-Z0-9.-]*\.)?(assay|dyff)\.io/")


def is_reserved_label_key(key: str) -> bool:
    """True for keys under ``assay.io/`` or ``dyff.io/`` (or a subdomain of either)."""
    return _RESERVED_RE.match(key) is not None


#: The serialisation context of the reference's wire format: ``model_dump(context=
#: REFERENCE_WIRE)`` leaves out Assay's extensions (see :func:`reference_wire`).
REFERENCE_WIRE: dict[str, Any] = {"assay.wire": "reference"}
#: The request header with which a client asks the server for Assay's wire format, with
#: Assay's extensions (``true``); without it, answers are in the reference's.
EXTENSIONS_HEADER = "X-Assay-Extensions"


def is_reference_wire(info: pydantic.SerializationInfo) -> bool:
    """True when the model is serialised for the reference's wire format."""
    context = info.context
    return isinstance(context, dict) and context.get("assay.wire") == "reference"


def _to_reference(
    model: Any,
    data: Any,
    info: pydantic.SerializationInfo,
    extensions: tuple[str, ...],
    transform: Callable[[Any, dict[str, Any]], None] | None,
) -> Any:
    if isinstance(data, dict) and is_reference_wire(info):
        for name in extensions:
            data.pop(name, None)
        if transform is not None:
            transform(model, data)
    return data


def reference_wire(
    *extensions: str, transform: Callable[[Any, dict[str, Any]], None] | None = None
) -> Any:
    """A wrap ``model_serializer`` for a model with Assay's extensions: serialised for the
    reference's wire format (context :data:`REFERENCE_WIRE`), its dict loses the wire fields
    ``extensions`` (the model's Assay-only fields), then goes through ``transform(model,
    data)``, which changes it in place; serialised otherwise, it is left as it is. Assign it
    in the class body (subclasses inherit it)::

        _reference_wire = reference_wire("interval", "confidence")
    """
    # a lambda, with no return annotation: pydantic would take one as the schema of what the
    # model serialises to, and the OpenAPI document would lose the model's own
    return pydantic.model_serializer(mode="wrap")(
        lambda self, handler, info: _to_reference(self, handler(self), info, extensions, transform)
    )


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class SchemaModel(BaseModel):
    """Base of every Assay schema type: wire field names by alias, ``None`` omitted,
    unknown fields refused, datetimes in UTC."""

    model_config = ConfigDict(
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        use_attribute_docstrings=True,
        ser_json_timedelta="iso8601",
    )

    @pydantic.model_validator(mode="after")
    def _datetimes_in_utc(self) -> Any:
        for name, value in self.__dict__.items():
            if isinstance(value, datetime) and value.tzinfo is not UTC:
                object.__setattr__(self, name, _utc(value))
        return self

    def model_dump(  # type: ignore[override]
        self, *, by_alias: bool = True, exclude_none: bool = True, **kwargs: Any
    ) -> dict[str, Any]:
        return super().model_dump(by_alias=by_alias, exclude_none=exclude_none, **kwargs)

    def model_dump_json(  # type: ignore[override]
        self, *, by_alias: bool = True, exclude_none: bool = True, **kwargs: Any
    ) -> str:
        return super().model_dump_json(by_alias=by_alias, exclude_none=exclude_none, **kwargs)

    def to_wire(self, *, reference: bool = False) -> dict[str, Any]:
        """The JSON-compatible dict sent on the wire (aliases, no ``None``); with
        ``reference``, in the reference's wire format: without Assay's extensions."""
        return self.model_dump(mode="json", context=REFERENCE_WIRE if reference else None)

    # The reference's v1-style spellings, kept because its tutorials use them
    # (``service.json(indent=2)``); they do not warn.
    def dict(self, **kwargs: Any) -> dict[str, Any]:
        return self.model_dump(**kwargs)

    def json(self, **kwargs: Any) -> str:
        return self.model_dump_json(**kwargs)


M = TypeVar("M", bound=BaseModel)


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(request)"


def describe_validation_error(
    exc: pydantic.ValidationError, *, what: str
) -> errors.ValidationError:
    """Turn pydantic's error into Assay's: one line per broken rule, naming the field, the
    rule and the value."""
    lines: list[str] = []
    details: list[dict[str, Any]] = []
    for err in exc.errors(include_url=False):
        field = _location(tuple(err.get("loc", ())))
        value = err.get("input")
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        msg = err.get("msg", "invalid")
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        if msg.startswith(f"{field}: "):  # a validator that already named the field
            msg = msg[len(field) + 2 :]
        if err.get("type") == "missing":
            lines.append(f"{field}: required field is missing")
        elif err.get("type") == "extra_forbidden":
            lines.append(f"{field}: unknown field (value {shown}); remove it or check its spelling")
        elif not err.get("loc"):  # a rule over the whole request: the message says it all
            lines.append(msg)
        else:
            lines.append(f"{field}: {msg} (got {shown})")
        details.append({"field": field, "rule": err.get("type"), "message": msg})
    first = details[0]["field"] if details else None
    message = f"invalid {what}: " + "; ".join(lines)
    return errors.ValidationError(message, field=first, errors=details, entity=what)


def validate_model(model: type[M], data: Any, *, what: str | None = None) -> M:
    """Validate ``data`` (a model instance or a dict) as ``model``, raising
    :class:`assay.errors.ValidationError` with a readable message."""
    if isinstance(data, model):
        return data
    if isinstance(data, BaseModel):
        data = data.model_dump(by_alias=True, exclude_unset=True)
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise describe_validation_error(exc, what=what or model.__name__) from None


def docs(text: str, **kwargs: Any) -> Any:
    """``Field(description=text, ...)``: spelled out for fields whose docstring is not
    enough (aliases, defaults)."""
    return Field(description=text, **kwargs)
