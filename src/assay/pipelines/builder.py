"""Building a pipeline's definition: the step methods shared by a pipeline on this platform
(:class:`assay.pipelines.Pipeline`) and one on a server (``Client.pipelines``). Each step is
checked as it is added: its services exist and are Ready, its arguments parse, its
validations refer to columns the services (or the input schema) declare. Design notes:
``docs/design/pipelines.md``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal, Self

import pyarrow as pa

from assay import errors
from assay.pipelines.catalog import ServiceCatalog
from assay.pipelines.definition import (
    AuditStep,
    KeySplitStep,
    ModelStep,
    MultiModelStep,
    PipelineDefinition,
    RandomSplitStep,
    SelectStep,
    Step,
    ValidationsStep,
    column_prefix,
    encode_schema,
    parse_slice,
    shadow_steps,
)
from assay.pipelines.validations import parse_check

__all__ = ["PipelineBuilder", "check_name"]

_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def check_name(name: Any) -> str:
    """Refuse a pipeline name that is not up to 63 letters, digits and '-'."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise errors.ValidationError(
            f"pipeline name {name!r} is not valid: use up to 63 ASCII letters, digits and "
            "'-', starting and ending with a letter or digit",
            field="name",
            value=name,
        )
    return name


class PipelineBuilder:
    """The steps of a pipeline, as the next deploy will store them. ``services`` is anything
    with an ``inferenceservices`` group (a platform core, a LocalPlatform, a Client)."""

    def __init__(self, services: Any, name: str, definition: PipelineDefinition) -> None:
        self.name = check_name(name)
        self._catalog = ServiceCatalog(services, name)
        self._steps: list[Step] = list(definition.steps)
        self._input_schema: str | None = definition.inputSchema

    # -- steps -----------------------------------------------------------------------------

    def add_model_step(self, service: Any) -> Self:
        """Run ``service`` (an id or an InferenceService) on the current input."""
        return self._add(self._model_step(service))

    def add_multi_model_step(self, services: Sequence[Any]) -> Self:
        """Run every service on the same input; the outputs are theirs, in order."""
        return self._add(self._multi_model_step(services))

    def add_audit(self, slice: str) -> Self:
        """Keep (and log) the slice ``"start:end"`` of the previous step's outputs."""
        return self._add(self._audit_step(slice))

    def add_select(self, index: int) -> Self:
        """Keep output ``index`` of the previous step."""
        return self._add(self._select_step(index))

    def add_key_split(self, default: Any, meta_key: str, options: dict[Any, Any]) -> Self:
        """Route on input field ``meta_key``: ``options[value]``, else ``default``."""
        return self._add(self._key_split_step(default, meta_key, options))

    def add_random_split(
        self,
        weighted: Sequence[tuple[float, Any]],
        hash_key: str | None = None,
        hash_key_mode: str = "value",
    ) -> Self:
        """Route to one service with probability proportional to its weight: a draw in
        [0.0, 1.0] picks the weight's share that holds it (with weights 1 and 1, 0.4 takes
        the first service, 0.6 the second). With ``hash_key``, the value of that input field
        is the draw: a number in [0.0, 1.0] (any other value fails the row; a row without the
        field, or with null, gets a random draw). With ``hash_key_mode="hash"``, the draw is
        the hash of the field's value instead, so any value always takes the same route."""
        return self._add(self._random_split_step(weighted, hash_key, hash_key_mode))

    def add_shadow_deploy(self, champion: Any, challengers: Sequence[Any]) -> Self:
        """Run ``champion`` and every challenger; the champion answers, the challengers'
        outputs are recorded as ``out_<name>.*`` (a failing challenger's error as
        ``out_<name>.error``). Three steps: a multi-model step, an audit of the challengers
        and a select of the champion; remove or replace each with ``remove_step`` and the
        ``replace_with_...`` methods."""
        return self._extend(self._shadow_steps(champion, challengers))

    def add_validations(self, **checks: Any) -> Self:
        """Named checks over the record (``anomaly.<name>`` is true where one holds): each
        an expression of the check language (``"out.score > 0.9"``, see
        :mod:`assay.pipelines.validations`) or a polars expression
        (``pl.col("out.score") > 0.9``, with polars installed)."""
        return self._add(self._validations_step(checks, replacing=None))

    def add_validation(self, name: str, validation: Any) -> Self:
        """One named check, as :meth:`add_validations` adds them (a step of its own)."""
        return self._add(self._validations_step({name: validation}, replacing=None))

    def replace_with_model_step(self, index: int, service: Any) -> Self:
        return self._replace(index, self._model_step(service))

    def replace_with_multi_model_step(self, index: int, services: Sequence[Any]) -> Self:
        return self._replace(index, self._multi_model_step(services))

    def replace_with_audit(self, index: int, slice: str) -> Self:
        return self._replace(index, self._audit_step(slice))

    def replace_with_select(self, index: int, select_index: int) -> Self:
        return self._replace(index, self._select_step(select_index))

    def replace_with_key_split(
        self, index: int, default: Any, meta_key: str, options: dict[Any, Any]
    ) -> Self:
        return self._replace(index, self._key_split_step(default, meta_key, options))

    def replace_with_random_split(
        self,
        index: int,
        weighted: Sequence[tuple[float, Any]],
        hash_key: str | None = None,
        hash_key_mode: str = "value",
    ) -> Self:
        return self._replace(index, self._random_split_step(weighted, hash_key, hash_key_mode))

    def replace_with_shadow_deploy(
        self, index: int, champion: Any, challengers: Sequence[Any]
    ) -> Self:
        """Replace the step at ``index`` with the three steps of a shadow deploy (replacing
        an earlier shadow deploy takes replacing or removing each of its three steps)."""
        position = self._index(index)
        self._steps[position : position + 1] = self._shadow_steps(champion, challengers)
        return self

    def replace_with_validations(self, index: int, **checks: Any) -> Self:
        self._index(index)
        return self._replace(index, self._validations_step(checks, replacing=index))

    def replace_with_alert(self, index: int, name: str, alert: Any) -> Self:
        """Replace the step at ``index`` with a validations step of one check ``name``
        (``alert``: an expression, as :meth:`add_validation` takes)."""
        self._index(index)
        return self._replace(index, self._validations_step({name: alert}, replacing=index))

    def remove_step(self, index: int) -> Self:
        """Remove the step at ``index``."""
        del self._steps[self._index(index)]
        return self

    def clear(self) -> Self:
        """Remove every step (the deployed version keeps running until the next deploy)."""
        self._steps.clear()
        return self

    def set_input_schema(self, schema: Any) -> Self:
        """Declare the schema every input row must fit (a ``pyarrow.Schema`` or a
        DataSchema; None: any JSON object). Rows with a missing non-nullable field, a field
        the schema lacks or a value of another type are refused before any step runs (and
        recorded in the failure log). Stored with the next version."""
        self._input_schema = None if schema is None else encode_schema(schema)
        return self

    @property
    def input_schema(self) -> pa.Schema | None:
        """The declared input schema (None: any JSON object)."""
        return self.definition.input_schema()

    def steps(self) -> list[str]:
        """One readable line per step of the current (undeployed) definition."""
        return self.definition.describe(self._catalog.name_of)

    def set_definition(self, definition: PipelineDefinition | dict[str, Any]) -> Self:
        """Replace every step (and the input schema) by those of ``definition`` (a
        :class:`PipelineDefinition` or its JSON), checked as a deploy checks them."""
        from assay.schema.base import validate_model

        if not isinstance(definition, PipelineDefinition):
            definition = validate_model(PipelineDefinition, definition, what="pipeline definition")
        self._catalog.compile(definition)
        self._steps = list(definition.steps)
        self._input_schema = definition.inputSchema
        return self

    @property
    def definition(self) -> PipelineDefinition:
        """The current definition (what the next ``deploy()`` stores)."""
        return PipelineDefinition(steps=list(self._steps), inputSchema=self._input_schema)

    def model_configs(self) -> list[Any]:
        """The InferenceServices the steps of the current definition call (Assay's model
        configurations: runner, resources, interface), each once, in order of appearance;
        one deleted since is left out."""
        found = (self._catalog.entity(id) for id in self.definition.services())
        return [entity for entity in found if entity is not None]

    def _add(self, step: Step) -> Self:
        self._steps.append(step)
        return self

    def _extend(self, steps: Sequence[Step]) -> Self:
        self._steps.extend(steps)
        return self

    def _replace(self, index: int, step: Step) -> Self:
        self._steps[self._index(index)] = step
        return self

    def _index(self, index: int) -> int:
        if (
            isinstance(index, bool)
            or not isinstance(index, int)
            or not 0 <= index < len(self._steps)
        ):
            raise errors.ValidationError(
                f"pipeline {self.name!r} has no step {index!r}; its steps are numbered 0 to "
                f"{len(self._steps) - 1}"
                if self._steps
                else f"pipeline {self.name!r} has no steps",
                field="index",
                value=index,
            )
        return index

    def _service(self, service: Any, field: str = "service") -> str:
        return self._catalog.require(service, field)

    def _model_step(self, service: Any) -> ModelStep:
        return ModelStep(service=self._service(service))

    def _multi_model_step(self, services: Sequence[Any]) -> MultiModelStep:
        if isinstance(services, str) or not services:
            raise errors.ValidationError(
                "services must be a non-empty list of InferenceServices or ids", field="services"
            )
        return MultiModelStep(services=[self._service(s, "services") for s in services])

    def _audit_step(self, slice: str) -> AuditStep:
        start, stop = parse_slice(slice)
        return AuditStep(start=start, stop=stop)

    def _select_step(self, index: int) -> SelectStep:
        if isinstance(index, bool) or not isinstance(index, int):
            raise errors.ValidationError(
                f"select index must be an integer, got {index!r}", field="index", value=index
            )
        return SelectStep(index=index)

    def _key_split_step(self, default: Any, meta_key: str, options: dict[Any, Any]) -> KeySplitStep:
        if not isinstance(meta_key, str) or not meta_key:
            raise errors.ValidationError(
                f"meta_key must name an input field, got {meta_key!r}", field="meta_key"
            )
        if not isinstance(options, dict):
            raise errors.ValidationError(
                f"options must be a dict of input value → service, got {type(options).__name__}",
                field="options",
            )
        return KeySplitStep(
            default=self._service(default, "default"),
            meta_key=meta_key,
            options=[
                (value, self._service(s, f"options[{value!r}]")) for value, s in options.items()
            ],
        )

    def _random_split_step(
        self, weighted: Sequence[tuple[float, Any]], hash_key: str | None, hash_key_mode: str
    ) -> RandomSplitStep:
        if isinstance(weighted, str) or not weighted:
            raise errors.ValidationError(
                "weighted must be a non-empty list of (weight, service) pairs", field="weighted"
            )
        pairs: list[tuple[float, str]] = []
        for i, pair in enumerate(weighted):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise errors.ValidationError(
                    f"weighted[{i}] must be a (weight, service) pair, got {pair!r}",
                    field="weighted",
                )
            weight, service = pair
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int | float)
                or not weight > 0
                or weight == float("inf")
            ):
                raise errors.ValidationError(
                    f"weighted[{i}]: weight {weight!r} is not a positive finite number; weights "
                    "are relative (1 and 2 send about a third and two thirds)",
                    field="weighted",
                    value=weight,
                )
            pairs.append((float(weight), self._service(service, f"weighted[{i}]")))
        if hash_key is not None and (not isinstance(hash_key, str) or not hash_key):
            raise errors.ValidationError(
                f"hash_key must name an input field or be None, got {hash_key!r}", field="hash_key"
            )
        if hash_key_mode not in ("value", "hash"):
            raise errors.ValidationError(
                f"hash_key_mode must be 'value' (the field holds the draw, a number in "
                f"[0.0, 1.0]) or 'hash' (the draw is the hash of any value), got "
                f"{hash_key_mode!r}",
                field="hash_key_mode",
                value=hash_key_mode,
            )
        mode: Literal["value", "hash"] = "hash" if hash_key_mode == "hash" else "value"
        return RandomSplitStep(weighted=pairs, hash_key=hash_key, hash_key_mode=mode)

    def _shadow_steps(self, champion: Any, challengers: Sequence[Any]) -> list[Step]:
        if isinstance(challengers, str) or not challengers:
            raise errors.ValidationError(
                "challengers must be a non-empty list of InferenceServices or ids",
                field="challengers",
            )
        ids = [self._service(c, "challengers") for c in challengers]
        prefixes = [column_prefix(self._catalog.name_of(c)) for c in ids]
        clash = sorted({p for p in prefixes if prefixes.count(p) > 1})
        if clash:
            raise errors.ValidationError(
                f"challengers {clash} would share the output columns {clash}: their services "
                "have the same name; give them distinct names",
                field="challengers",
            )
        return shadow_steps(self._service(champion, "champion"), ids)

    def _validations_step(
        self, checks: dict[str, Any], *, replacing: int | None
    ) -> ValidationsStep:
        if not checks:
            raise errors.ValidationError(
                "add_validations needs at least one named check, e.g. "
                "add_validations(high='out.score > 0.9')",
                field="validations",
            )
        parsed = [parse_check(k, v) for k, v in checks.items()]
        taken = {
            name
            for i, step in enumerate(self._steps)
            if isinstance(step, ValidationsStep) and i != replacing
            for name in step.checks
        }
        for check in parsed:
            if check.name in taken:
                raise errors.ValidationError(
                    f"a validation named {check.name!r} exists already; choose another name or "
                    "replace its step with replace_with_validations",
                    field="validations",
                    value=check.name,
                )
        known = self._catalog.known_columns(self._steps)
        for check in parsed:
            self._catalog.check_columns(check, known, self.definition.input_schema())
        return ValidationsStep(checks={check.name: check.stored for check in parsed})
