"""The InferenceServices a pipeline refers to: their names, their readiness and the columns
their outputs become, looked up in the platform's store.

Used where a pipeline is built (checking each step's services) and where a version starts
(compiling its validations against the columns the services declare). Design notes:
``docs/design/pipelines.md``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from assay import errors
from assay.core import references
from assay.pipelines.definition import (
    AuditStep,
    KeySplitStep,
    ModelStep,
    MultiModelStep,
    PipelineDefinition,
    RandomSplitStep,
    SelectStep,
    Step,
    column_prefix,
)
from assay.pipelines.validations import Check, parse_check

__all__ = ["ANSWERING", "ServiceCatalog", "answering", "field_names"]

#: The kinds of step whose outputs become ``out.*``.
ANSWERING = (ModelStep, MultiModelStep, KeySplitStep, RandomSplitStep)
_EXTRA_OUTPUT = re.compile(r"^out\.\d+\.")


def answering(steps: Sequence[Step]) -> tuple[list[list[str]], list[str]] | None:
    """After ``steps``: the services whose outputs remain, grouped as the runtime counts
    services (each group the services one of them may be), and the services whose outputs
    an audit counted in services records as ``out_<name>.*``. None: no step answers."""
    groups: list[list[str]] | None = None
    audited: list[str] = []
    for step in steps:
        match step:
            case ModelStep():
                groups = [[step.service]]
            case MultiModelStep():
                groups = [[s] for s in step.service_ids]
            case KeySplitStep() | RandomSplitStep():
                groups = [list(dict.fromkeys(step.services()))]
            case AuditStep(unit="service") if groups is not None:
                audited += [s for group in groups[step.start : step.stop] for s in group]
            case SelectStep(unit="service") if groups is not None:
                inside = -len(groups) <= step.index < len(groups)
                groups = [groups[step.index]] if inside else []
            case AuditStep() | SelectStep() if groups is not None:  # outputs of any of them
                groups = [list(dict.fromkeys(s for group in groups for s in group))]
    return None if groups is None else (groups, list(dict.fromkeys(audited)))


class ServiceCatalog:
    """The services of pipeline ``pipeline``, looked up through ``core`` (a platform core or
    anything with an ``inferenceservices`` group)."""

    def __init__(self, core: Any, pipeline: str) -> None:
        self._services = core.inferenceservices
        self._pipeline = pipeline
        self._names: dict[str, str] = {}

    def require(self, service: Any, field: str = "service") -> str:
        """The id of ``service`` (an id or an entity), checked to exist and be Ready."""
        from assay.schema.status import Status

        id = service if isinstance(service, str) else getattr(service, "id", None)
        if not isinstance(id, str):
            raise errors.ValidationError(
                f"{field} must be an InferenceService or its id, got {type(service).__name__}",
                field=field,
            )
        entity = self._services.get(id)
        # one that the caller may not use is answered as one that does not exist
        if entity is None or not references.may_use("InferenceService", entity.account, id):
            raise errors.NotFoundError(
                f"pipeline {self._pipeline!r}: {field} {id!r} is not an InferenceService of this "
                "platform; create it first (e.g. inferenceservices.create_mock(...))",
                kind="InferenceService",
                id=id,
            )
        if entity.status != Status.Ready:
            raise errors.ValidationError(
                f"pipeline {self._pipeline!r}: InferenceService {entity.name!r} ({id}) is not "
                f"ready (status {entity.status}); wait for it or fix it before adding it",
                field=field,
                value=id,
            )
        self._names[id] = entity.name
        return id

    def entity(self, id: str) -> Any:
        """The InferenceService ``id`` (None: it no longer exists)."""
        return self._services.get(id)

    def name_of(self, id: str) -> str:
        """The name of service ``id`` (its id when it no longer exists)."""
        if id not in self._names:
            entity = self._services.get(id)
            if entity is None:
                return id
            self._names[id] = entity.name
        return self._names[id]

    def item_schema(self, id: str) -> pa.Schema | None:
        """The schema of one response of service ``id`` (None: it cannot be read)."""
        try:
            schema = self._services.require(id).interface.outputSchema.arrow_schema()
            item = schema.field("responses").type.value_type
        except Exception:  # a schema we cannot read: the columns are checked at inference
            return None
        return pa.schema([f for f in item if f.name != "_response_index_"])

    def output_fields(self, id: str) -> list[str] | None:
        """The flattened names of a response's fields (None: unknown)."""
        item = self.item_schema(id)
        if item is None:
            return None
        return [name for field in item for name in field_names(field.name, field.type)]

    def known_columns(self, steps: Sequence[Step]) -> set[str] | None:
        """The ``out.*`` and ``out_<name>.*`` columns the services declare (None: no step
        answers yet, or a service's schema is unknown)."""
        found = answering(steps)
        if found is None or not found[0]:
            return None
        groups, audited = found
        known: set[str] = set()
        for service in dict.fromkeys(s for group in groups for s in group):
            fields = self.output_fields(service)
            if fields is None:
                return None
            known |= {f"out.{f}" for f in fields}
        for challenger in audited:
            fields = self.output_fields(challenger)
            if fields is None:
                return None
            prefix = column_prefix(self.name_of(challenger))
            known |= {f"{prefix}.{f}" for f in fields} | {f"{prefix}.error"}
        return known

    def check_columns(
        self, check: Check, known: set[str] | None, inputs: pa.Schema | None = None
    ) -> None:
        """Refuse a check that reads a column no service (or the input schema) declares."""
        input_columns = (
            None
            if inputs is None
            else {f"in.{n}" for f in inputs for n in field_names(f.name, f.type)}
        )
        for column in sorted(check.columns):
            if column.startswith("metadata."):
                continue
            if column.startswith("in."):
                if input_columns is not None and column not in input_columns:
                    raise errors.ValidationError(
                        f"validation {check.name!r} ({check.source!r}) refers to unknown column "
                        f"{column!r}; the pipeline's input columns are: "
                        f"{', '.join(sorted(input_columns))}",
                        field=f"validations.{check.name}",
                        value=check.source,
                    )
                continue
            if not column.startswith(("out.", "out_")):
                raise errors.ValidationError(
                    f"validation {check.name!r} ({check.source!r}) refers to {column!r}; columns "
                    "start with in., out., out_<challenger>. or metadata.",
                    field=f"validations.{check.name}",
                    value=check.source,
                )
            if known is not None and _EXTRA_OUTPUT.sub("out.", column) not in known:
                raise errors.ValidationError(
                    f"validation {check.name!r} ({check.source!r}) refers to unknown column "
                    f"{column!r}; the services' output columns are: {', '.join(sorted(known))}",
                    field=f"validations.{check.name}",
                    value=check.source,
                )

    def compile(self, definition: PipelineDefinition) -> tuple[list[Check], frozenset[str]]:
        """Check a definition before it is stored or started: a step that calls a service,
        every service there and Ready, every validation's columns known. Returns the parsed
        checks and the columns the services declare (read as nulls where a batch lacks them)."""
        if not any(isinstance(s, ANSWERING) for s in definition.steps):
            raise errors.ValidationError(
                f"pipeline {self._pipeline!r} has no step that calls a service; add one "
                "(add_model_step, add_key_split, ...) before deploying",
                field="steps",
            )
        for service in definition.services():
            self.require(service)
        checks = [parse_check(k, v) for k, v in definition.checks().items()]
        known = self.known_columns(definition.steps)
        inputs = definition.input_schema()
        for check in checks:
            self.check_columns(check, known, inputs)
        nullable = set(known or ())
        if inputs is not None:
            nullable |= {f"in.{n}" for f in inputs for n in field_names(f.name, f.type)}
        return checks, frozenset(nullable)

    def output_schema(self, definition: PipelineDefinition) -> pa.Schema | None:
        """The schema of one response of the pipeline: that of the services of its last
        answering step, unified (None: a service's schema is unknown or they do not unify)."""
        found = answering(definition.steps)
        if found is None or not found[0]:
            return None
        services = [s for group in found[0] for s in group]
        schemas = [self.item_schema(s) for s in dict.fromkeys(services)]
        if any(s is None for s in schemas):
            return None
        try:
            return pa.unify_schemas(
                [s for s in schemas if s is not None], promote_options="permissive"
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None


def field_names(name: str, type: pa.DataType) -> list[str]:
    """The flattened column names of a field (structs with dots, like the records)."""
    if pa.types.is_struct(type) and type.num_fields:
        return [f"{name}.{sub}" for child in type for sub in field_names(child.name, child.type)]
    return [name]
