"""What a pipeline is made of: its steps, as plain data that a version stores as JSON.

Services are held by id; the names shown by :meth:`PipelineDefinition.describe` and used for
shadow columns are looked up when the pipeline is built or run. Design notes:
``docs/design/pipelines.md``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.ipc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from assay import errors

__all__ = [
    "AuditStep",
    "KeySplitStep",
    "ModelStep",
    "MultiModelStep",
    "PipelineDefinition",
    "RandomSplitStep",
    "SelectStep",
    "ShadowStep",
    "Step",
    "ValidationsStep",
    "column_prefix",
    "encode_schema",
    "parse_slice",
    "shadow_steps",
]

#: The version of the stored definition format. 2: a shadow deploy is three steps
#: (multi-model, audit, select) and a random split's ``hash_key`` holds the draw itself
#: unless ``hash_key_mode`` is ``"hash"``; a version-1 definition is read as version 2 (its
#: ``shadow`` steps expanded, its ``hash_key`` splits given ``hash_key_mode="hash"``).
DEFINITION_VERSION = 2

#: What a step's outputs are counted in: ``output`` (each output) or ``service`` (the
#: outputs of one service of the previous step together, as a shadow deploy counts them).
Unit = Literal["output", "service"]


class _StepBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    def services(self) -> list[str]:
        """The ids of the services this step may call."""
        return []


class ModelStep(_StepBase):
    """Runs one service on the current input."""

    kind: Literal["model"] = "model"
    """Always ``model``."""
    service: str
    """The id of the InferenceService."""

    def services(self) -> list[str]:
        return [self.service]


class MultiModelStep(_StepBase):
    """Runs every service on the same input; the outputs are theirs, in service order."""

    kind: Literal["multi_model"] = "multi_model"
    """Always ``multi_model``."""
    service_ids: list[str] = Field(alias="services")
    """The ids of the InferenceServices, in order."""
    shadow: bool = False
    """The first step of a shadow deploy: a service after the first (a challenger) that
    fails does not fail the row; its outputs are ``[{"error": "<type>: <message>"}]``."""

    def services(self) -> list[str]:
        return list(self.service_ids)


class AuditStep(_StepBase):
    """Keeps the slice ``outputs[start:stop]`` of the previous step's outputs (all of which
    are then logged). Counted in services (``unit="service"``, the second step of a shadow
    deploy), it keeps every output and records those of the services in the slice under
    ``out_<name>.*``."""

    kind: Literal["audit"] = "audit"
    """Always ``audit``."""
    start: int | None = None
    """The first output (or service) in the slice (None: from the first)."""
    stop: int | None = None
    """The output (or service) after the last one in the slice (None: to the end)."""
    unit: Unit = "output"
    """What ``start`` and ``stop`` count: outputs, or the services that gave them."""


class SelectStep(_StepBase):
    """Keeps output ``index`` alone; counted in services (``unit="service"``, the third
    step of a shadow deploy), keeps every output of service ``index``."""

    kind: Literal["select"] = "select"
    """Always ``select``."""
    index: int
    """The index of the output (or service) kept (negative counts from the end)."""
    unit: Unit = "output"
    """What ``index`` counts: outputs, or the services that gave them."""


class KeySplitStep(_StepBase):
    """Routes on the value of input field ``meta_key``: the service of the matching option,
    ``default`` otherwise."""

    kind: Literal["key_split"] = "key_split"
    """Always ``key_split``."""
    default: str
    """The id of the service used when no option matches."""
    meta_key: str
    """The input field routed on."""
    options: list[tuple[Any, str]]
    """``(value, service id)`` pairs; values compare by their canonical JSON."""

    def services(self) -> list[str]:
        return [self.default, *(service for _, service in self.options)]


class RandomSplitStep(_StepBase):
    """Routes to one service drawn with probability proportional to its weight: the weights
    share [0.0, 1.0] in order and the draw picks the share that holds it. With ``hash_key``,
    the input field's value is the draw (a number in [0.0, 1.0]); with
    ``hash_key_mode="hash"``, the draw is the hash of the field's value (any JSON value)."""

    kind: Literal["random_split"] = "random_split"
    """Always ``random_split``."""
    weighted: list[tuple[float, str]]
    """``(weight, service id)`` pairs; weights are positive and relative."""
    hash_key: str | None = None
    """The input field whose value decides the route (None: a random draw each time)."""
    hash_key_mode: Literal["value", "hash"] = "value"
    """``value``: the field holds the draw, a number in [0.0, 1.0] (another value fails the
    row); ``hash``: the draw is the BLAKE2b hash of the field's canonical JSON."""

    def services(self) -> list[str]:
        return [service for _, service in self.weighted]


class ShadowStep(_StepBase):
    """A shadow deploy as version 1 of the format stored it, as one step; it is read as its
    three steps (:func:`shadow_steps`) and never stored again."""

    kind: Literal["shadow"] = "shadow"
    """Always ``shadow``."""
    champion: str
    """The id of the service that answers."""
    challengers: list[str]
    """The ids of the services run in its shadow."""

    def services(self) -> list[str]:
        return [self.champion, *self.challengers]

    def expand(self) -> list[Step]:
        """The three steps this shadow deploy is."""
        return shadow_steps(self.champion, self.challengers)


def shadow_steps(champion: str, challengers: list[str]) -> list[Step]:
    """A shadow deploy as three steps: every service on the same input (a challenger's
    failure recorded, not fatal), the challengers' outputs recorded as ``out_<name>.*``, and
    the champion's outputs kept."""
    return [
        MultiModelStep(services=[champion, *challengers], shadow=True),
        AuditStep(start=1, unit="service"),
        SelectStep(index=0, unit="service"),
    ]


class ValidationsStep(_StepBase):
    """Named checks over the final record, evaluated after every step wherever they stand;
    a check that is true flags an anomaly."""

    kind: Literal["validations"] = "validations"
    """Always ``validations``."""
    checks: dict[str, str | dict[str, str]]
    """Check name → expression (see :mod:`assay.pipelines.validations`): the language's
    text, or a polars expression serialised (``{"polars": <JSON>, "polarsVersion": ...}``)."""


Step = Annotated[
    ModelStep
    | MultiModelStep
    | AuditStep
    | SelectStep
    | KeySplitStep
    | RandomSplitStep
    | ValidationsStep,
    Field(discriminator="kind"),
]


class PipelineDefinition(BaseModel):
    """The whole definition of a pipeline: what a version stores."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    definitionVersion: int = DEFINITION_VERSION
    """The version of this format."""
    steps: list[Step] = Field(default_factory=list)
    """The steps, in order."""
    inputSchema: str | None = None
    """The Arrow schema every input row must fit (base64 of its IPC serialisation; None:
    any JSON object). InferenceServices declare no input schema, so the pipeline does."""

    @model_validator(mode="before")
    @classmethod
    def _read_version_1(cls, data: Any) -> Any:
        """Read the older form: a ``shadow`` step as its three steps and, in a version-1
        definition, a random split's ``hash_key`` as the hash it was then."""
        if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
            return data
        stored = data.get("definitionVersion", DEFINITION_VERSION)
        older = isinstance(stored, int) and stored < DEFINITION_VERSION
        steps: list[Any] = []
        for step in data["steps"]:
            kind = step.get("kind") if isinstance(step, dict) else getattr(step, "kind", None)
            if kind == "shadow":
                shadow = step if isinstance(step, ShadowStep) else ShadowStep.model_validate(step)
                steps.extend(shadow.expand())
            elif (
                older
                and kind == "random_split"
                and isinstance(step, dict)
                and step.get("hash_key") is not None
                and "hash_key_mode" not in step
            ):
                steps.append({**step, "hash_key_mode": "hash"})
            else:
                steps.append(step)
        data = {**data, "steps": steps}
        if older:
            data["definitionVersion"] = DEFINITION_VERSION
        return data

    def input_schema(self) -> pa.Schema | None:
        """:attr:`inputSchema` as a pyarrow Schema (None: not declared)."""
        if self.inputSchema is None:
            return None
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.inputSchema)))

    def services(self) -> list[str]:
        """The ids of every service the steps may call, each once, in order of appearance."""
        return list(dict.fromkeys(s for step in self.steps for s in step.services()))

    def checks(self) -> dict[str, str | dict[str, str]]:
        """Every validation, by name."""
        return {
            k: v
            for step in self.steps
            if isinstance(step, ValidationsStep)
            for k, v in step.checks.items()
        }

    def describe(self, name_of: Callable[[str], str]) -> list[str]:
        """One readable line per step; ``name_of`` gives a service's name from its id."""
        return [f"{i}: {_describe(step, name_of)}" for i, step in enumerate(self.steps)]


def _describe(step: Any, name_of: Callable[[str], str]) -> str:
    match step:
        case ModelStep():
            return f"model {name_of(step.service)}"
        case MultiModelStep():
            names = ", ".join(map(name_of, step.service_ids))
            if step.shadow:
                return f"multi-model [{names}] (shadow deploy: a challenger's failure is recorded)"
            return f"multi-model [{names}]"
        case AuditStep():
            bounds = f"[{'' if step.start is None else step.start}:{'' if step.stop is None else step.stop}]"
            if step.unit == "service":
                return f"audit services {bounds} (shadow deploy: recorded as out_<name>.*)"
            return f"audit {bounds}"
        case SelectStep():
            if step.unit == "service":
                return f"select service {step.index} (shadow deploy: its outputs answer)"
            return f"select {step.index}"
        case KeySplitStep():
            options = ", ".join(f"{v!r} → {name_of(s)}" for v, s in step.options)
            return f"key split on {step.meta_key!r}: {options}; default {name_of(step.default)}"
        case RandomSplitStep():
            routes = ", ".join(f"{w:g} → {name_of(s)}" for w, s in step.weighted)
            sticky = ""
            if step.hash_key and step.hash_key_mode == "hash":
                sticky = f" (sticky on the hash of {step.hash_key!r})"
            elif step.hash_key:
                sticky = f" (sticky on {step.hash_key!r}, a number in [0.0, 1.0])"
            return f"random split {routes}{sticky}"
        case ValidationsStep():
            return "validations " + ", ".join(
                f"{k}: {v if isinstance(v, str) else 'polars expression'}"
                for k, v in step.checks.items()
            )
    raise AssertionError(f"unknown step {step!r}")  # pragma: no cover - the union is closed


_SLICE = re.compile(r"^\s*(-?\d+)?\s*:\s*(-?\d+)?\s*$")


def parse_slice(text: Any) -> tuple[int | None, int | None]:
    """``"1:"``, ``"0:2"``, ``":3"`` (a Python slice without a step) as ``(start, stop)``."""
    match = _SLICE.match(text) if isinstance(text, str) else None
    if match is None:
        raise errors.ValidationError(
            f"audit slice {text!r} does not parse; write it as a Python slice without a step: "
            "'start:', 'start:end' or ':end' (e.g. '1:', '0:2', ':3')",
            field="slice",
            value=text,
        )
    start, stop = match.groups()
    return (None if start is None else int(start), None if stop is None else int(stop))


_NOT_IDENTIFIER = re.compile(r"\W")


def column_prefix(service_name: str) -> str:
    """The column prefix of a challenger's outputs: ``out_<name>`` with every character that
    cannot be part of an identifier replaced by ``_`` (so validations can refer to it)."""
    return "out_" + _NOT_IDENTIFIER.sub("_", service_name)


def encode_schema(schema: Any) -> str:
    """A pyarrow Schema (or anything with ``arrow_schema()``, like a DataSchema) as the
    base64 text :attr:`PipelineDefinition.inputSchema` holds."""
    if not isinstance(schema, pa.Schema):
        to_arrow = getattr(schema, "arrow_schema", None)
        if not callable(to_arrow):
            raise errors.ValidationError(
                f"input_schema must be a pyarrow.Schema (or a DataSchema), got "
                f"{type(schema).__name__}",
                field="input_schema",
            )
        schema = to_arrow()
    if not schema.names:
        raise errors.ValidationError("input_schema has no fields", field="input_schema")
    return base64.b64encode(schema.serialize().to_pybytes()).decode()
