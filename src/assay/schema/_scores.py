"""Scores and curves: how a Method describes them (:class:`ScoreSpec`, :class:`CurveSpec`) and
what a SafetyCase publishes (:class:`Score`, :class:`Curve`).

A Method that publishes scores has exactly one primary :class:`ScoreSpec`; every score or curve
name is unique within the Method. Published scores can be queried across systems.

Public names are re-exported by :mod:`assay.schema.platform`.
"""

from __future__ import annotations

import contextlib
import math
import re
import string
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Discriminator, Field, Tag

from assay.schema import ids
from assay.schema.base import (
    IDENTIFIER_PATTERN,
    SUMMARY_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    Identifier,
    SchemaModel,
    reference_wire,
)

__all__ = [
    "DEFAULT_SCORE_FORMAT",
    "Curve",
    "CurveData",
    "CurveSpec",
    "Score",
    "ScoreData",
    "ScoreMetadata",
    "ScoreMetadataRefs",
    "ScoreOrCurveSpec",
    "ScoreSpec",
]

DEFAULT_SCORE_FORMAT = "{quantity:.1f}"
_FORMATTER = string.Formatter()
_FORMAT_EXAMPLE = "write e.g. '{quantity:.1f}' or '{quantity:.0f} {unit}'"

# -- specifications -------------------------------------------------------------------------------


def _render(fmt: str, quantity: float, unit: str | None) -> str:
    return fmt.format(quantity=quantity, unit=unit or "").strip()


def _identifier_message(field: str, value: Any) -> str:
    return (
        f"{field}: {value!r} is not an identifier; use letters, digits and '_', not starting "
        "with a digit, at most 127 characters (e.g. 'accuracy')"
    )


_IDENTIFIER_RE = re.compile(IDENTIFIER_PATTERN)


def _check_identifier(value: Any, info: pydantic.ValidationInfo) -> Any:
    if isinstance(value, str) and (len(value) > 127 or not _IDENTIFIER_RE.match(value)):
        raise ValueError(_identifier_message(info.field_name or "name", value))
    return value


_ScoreName = Annotated[Identifier, pydantic.BeforeValidator(_check_identifier)]


class ScoreSpec(SchemaModel):
    """Describes one score that a Method produces: how to name, read and display it."""

    name: _ScoreName
    """Key of the score, unique within the Method: an identifier, e.g. ``accuracy``."""
    title: str = Field(max_length=TITLE_MAX_LENGTH)
    """Title to display with the score (at most 140 characters)."""
    summary: str = Field(max_length=SUMMARY_MAX_LENGTH)
    """What the score measures, in a sentence (at most 280 characters)."""
    valence: Literal["positive", "negative", "neutral"] = "neutral"
    """``positive`` if more is better, ``negative`` if less is better, else ``neutral``."""
    priority: Literal["primary", "secondary"] = "primary"
    """The ``primary`` score is the one shown where one score is shown; a Method has exactly
    one."""
    minimum: float | None = None
    """The smallest possible value, if known."""
    maximum: float | None = None
    """The largest possible value, if known."""
    format: str = DEFAULT_SCORE_FORMAT
    """Python format string that renders the score; must use ``{quantity}`` (with a format
    spec such as ``:.1f``) and may use ``{unit}``."""
    unit: str | None = None
    """Unit of measure, if any (SI abbreviations where possible, e.g. ``ms``)."""

    @pydantic.field_validator("format")
    @classmethod
    def _check_format(cls, fmt: str) -> str:
        try:
            names = [name for _, name, _, _ in _FORMATTER.parse(fmt) if name is not None]
        except ValueError as exc:
            raise ValueError(
                f"format: {fmt!r} is not a valid format string ({exc}); {_FORMAT_EXAMPLE}"
            ) from None
        others = sorted({n for n in names if n not in ("quantity", "unit")})
        if others:
            shown = ", ".join("{" + n + "}" for n in others)
            raise ValueError(
                f"format: {fmt!r} uses the placeholder(s) {shown}; only {{quantity}} and "
                f"{{unit}} are available; {_FORMAT_EXAMPLE}"
            )
        if "quantity" not in names:
            raise ValueError(f"format: {fmt!r} has no {{quantity}} placeholder; {_FORMAT_EXAMPLE}")
        try:
            _render(fmt, 3.14159, "kg")
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise ValueError(
                f"format: {fmt!r} cannot format a number ({exc}); {_FORMAT_EXAMPLE}"
            ) from None
        return fmt

    @pydantic.model_validator(mode="after")
    def _check_range(self) -> ScoreSpec:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(
                f"minimum: {self.minimum} is greater than maximum {self.maximum}; "
                "swap them or remove one"
            )
        return self

    def format_quantity(self, quantity: float) -> str:
        """``quantity`` rendered with :attr:`format` and :attr:`unit`."""
        return _render(self.format, quantity, self.unit)

    def quantity_string(self, quantity: float) -> str:
        """Same as :meth:`format_quantity` (the reference's name)."""
        return self.format_quantity(quantity)


class CurveSpec(SchemaModel):
    """Describes one curve that a Method produces: a set of named dimensions of equal
    length (e.g. ``threshold``, ``precision``, ``recall``)."""

    name: _ScoreName
    """Key of the curve, unique within the Method: an identifier."""
    title: str = Field(max_length=TITLE_MAX_LENGTH)
    """Title to display with the curve (at most 140 characters)."""
    summary: str = Field(max_length=SUMMARY_MAX_LENGTH)
    """What the curve shows, in a sentence (at most 280 characters)."""
    dimensions: dict[str, ScoreSpec] = Field(min_length=1)
    """Each dimension's description; the keys are the columns of the curve's ``points``."""


def _score_or_curve(value: Any) -> str:
    if isinstance(value, CurveSpec) or (isinstance(value, dict) and "dimensions" in value):
        return "curve"
    return "score"


ScoreOrCurveSpec = Annotated[
    Annotated[ScoreSpec, Tag("score")] | Annotated[CurveSpec, Tag("curve")],
    Discriminator(_score_or_curve),
]


# -- scores and curves as published --------------------------------------------------------------


class ScoreMetadataRefs(SchemaModel):
    """The entities a Score or Curve is about (an analysis scope plus the Method)."""

    method: str
    """The id of the Method that produced it."""
    dataset: str | None = None
    """The Dataset it is about."""
    inferenceService: str | None = None
    """The InferenceService it is about."""
    evaluation: str | None = None
    """The Evaluation it is about."""
    model: str | None = None
    """The Model it is about."""


class ScoreMetadata(SchemaModel):
    """Metadata of a Score or Curve."""

    refs: ScoreMetadataRefs
    """The entities it is about."""


def _derive_ids(data: Any) -> Any:
    """Fill in ``id`` (``score_id(analysis, name)``) when it is not given."""
    if isinstance(data, dict) and "id" not in data:
        with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
            data = {**data, "id": ids.score_id(data["analysis"], data["name"])}
    return data


def _check_derived_id(id: str, analysis: str, name: str) -> None:
    try:
        expected = ids.score_id(analysis, name)
    except (TypeError, ValueError, AttributeError):
        raise ValueError(f"analysis: {analysis!r} is not an entity id (32 hex digits)") from None
    if id != expected:
        raise ValueError(
            f"id: {id!r} is not the id of {name!r} from analysis {analysis!r}; it must be "
            f"{expected!r} (ids.score_id(analysis, name)); leave it out to have it computed"
        )


class ScoreData(ScoreSpec):
    """A Score's value and what it is about."""

    metadata: ScoreMetadata
    """The entities the score is about."""
    analysis: str
    """The id of the analysis (SafetyCase) that produced the score."""
    quantity: float | None = None
    """The value of the score."""
    quantityString: str
    """The value rendered with the spec's ``format`` (computed when left out)."""
    text: str = Field(max_length=SUMMARY_MAX_LENGTH)
    """A sentence that puts the value in context (at most 280 characters)."""
    interval: list[float] | None = Field(default=None, min_length=2, max_length=2)
    """A confidence interval ``[low, high]`` around the value (Assay; None: not given)."""
    confidence: float | None = Field(default=None, gt=0, lt=1)
    """The level of :attr:`interval`, e.g. ``0.95`` (Assay; None when there is none)."""

    # Assay's fields, which the reference's scores lack: on Assay's wire only
    _reference_wire = reference_wire("interval", "confidence")

    @pydantic.model_validator(mode="after")
    def _check_interval(self) -> ScoreData:
        if self.interval is None:
            if self.confidence is not None:
                raise ValueError("confidence: set only with an interval")
            return self
        low, high = self.interval
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise ValueError(f"interval: {self.interval} must be two finite numbers, low <= high")
        if self.quantity is not None and not low <= self.quantity <= high:
            raise ValueError(
                f"interval: {self.interval} does not hold the quantity {self.quantity}"
            )
        return self

    def value_string(self) -> str:
        """The value as people read it: :attr:`quantityString`, then the interval in the
        same format when there is one, e.g. ``"93.1% [91.0%, 95.0%]"``."""
        if self.interval is None:
            return self.quantityString
        low, high = (self.format_quantity(v) for v in self.interval)
        return f"{self.quantityString} [{low}, {high}]"


class Score(ScoreData):
    """A published score of a SafetyCase, queryable across systems."""

    kind: Literal["Score"] = "Score"
    """Always ``Score``."""
    id: str
    """Unique id: ``ids.score_id(analysis, name)`` (computed when left out)."""
    provenance: dict[str, Any] | None = Field(default=None, exclude=True)
    """What the score was made from (Assay; filled in by ``scores.query``, never sent on the
    wire): its analysis's digest, the digests of every Method and Dataset of its chain —
    :func:`assay.provenance.compare` says from these whether two scores are paired. Not part
    of the score: two scores are equal when their records are."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Score):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    @pydantic.model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        data = _derive_ids(data)
        if (
            isinstance(data, dict)
            and "quantityString" not in data
            and isinstance(data.get("quantity"), int | float)
        ):
            try:
                rendered = _render(
                    data.get("format", DEFAULT_SCORE_FORMAT), data["quantity"], data.get("unit")
                )
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                return data  # the format field reports the problem
            data = {**data, "quantityString": rendered}
        return data

    @pydantic.model_validator(mode="after")
    def _check_id(self) -> Score:
        _check_derived_id(self.id, self.analysis, self.name)
        return self


class CurveData(CurveSpec):
    """A Curve's points and what it is about."""

    metadata: ScoreMetadata
    """The entities the curve is about."""
    analysis: str
    """The id of the analysis (SafetyCase) that produced the curve."""
    points: dict[str, list[float]]
    """The values of each dimension, all of the same length (at least one point)."""

    @pydantic.model_validator(mode="after")
    def _check_points(self) -> CurveData:
        missing = [k for k in self.dimensions if k not in self.points]
        if missing:
            raise ValueError(
                f"points: missing the dimension(s) {', '.join(map(repr, missing))}; give a "
                f"list of values for every key of dimensions ({', '.join(self.dimensions)})"
            )
        lengths = {k: len(v) for k, v in self.points.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(
                f"points: all dimensions must have the same number of values; got {lengths}"
            )
        if not any(lengths.values()):
            raise ValueError("points: a curve needs at least one point; got empty lists")
        return self


class Curve(CurveData):
    """A published curve of a SafetyCase."""

    kind: Literal["Curve"] = "Curve"
    """Always ``Curve``."""
    id: str
    """Unique id: ``ids.score_id(analysis, name)`` (computed when left out)."""

    @pydantic.model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        return _derive_ids(data)

    @pydantic.model_validator(mode="after")
    def _check_id(self) -> Curve:
        _check_derived_id(self.id, self.analysis, self.name)
        return self
