"""Methods and the analyses that run them (Measurements and SafetyCases).

A Method is a Python function or a Jupyter notebook with declared parameters, inputs and
output; running it on some inputs is an analysis, whose output is a Measurement (Arrow data) or
a SafetyCase (a rendered document, plus the Scores and Curves described by the Method's
``scores``, see ``_scores``).

Public names are re-exported by :mod:`assay.schema.platform`.
"""

from __future__ import annotations

import enum
from typing import ClassVar, Literal

import pydantic
from pydantic import Field

from assay.schema._entity import Entity, ModelWithID
from assay.schema._inference import ContainerImageSource
from assay.schema._scores import CurveSpec, ScoreOrCurveSpec, ScoreSpec
from assay.schema.base import SchemaModel
from assay.schema.dataschema import DataSchema

__all__ = [
    "Analysis",
    "AnalysisArgument",
    "AnalysisBase",
    "AnalysisData",
    "AnalysisInput",
    "AnalysisOutputQueryFields",
    "AnalysisRequestBase",
    "AnalysisScope",
    "ForeignMethod",
    "Measurement",
    "MeasurementLevel",
    "MeasurementSpec",
    "Method",
    "MethodBase",
    "MethodImplementation",
    "MethodImplementationJupyterNotebook",
    "MethodImplementationKind",
    "MethodImplementationPythonFunction",
    "MethodImplementationPythonRubric",
    "MethodInput",
    "MethodInputKind",
    "MethodOutput",
    "MethodOutputKind",
    "MethodParameter",
    "MethodScope",
    "QueryableEntity",
    "SafetyCase",
    "SafetyCaseSpec",
]


class MeasurementLevel(enum.StrEnum):
    """What one row of a Measurement describes."""

    Dataset = "Dataset"
    Instance = "Instance"


class MethodScope(enum.StrEnum):
    """The kind of entity a Method's outputs are about."""

    InferenceService = "InferenceService"
    Evaluation = "Evaluation"


class MethodInputKind(enum.StrEnum):
    """The kinds of entity a Method can take as input."""

    Dataset = "Dataset"
    Evaluation = "Evaluation"
    Measurement = "Measurement"
    Report = "Report"


class MethodOutputKind(enum.StrEnum):
    """The kinds of entity a Method produces."""

    Measurement = "Measurement"
    SafetyCase = "SafetyCase"


class MethodImplementationKind(enum.StrEnum):
    """How a Method is implemented."""

    JupyterNotebook = "JupyterNotebook"
    PythonFunction = "PythonFunction"
    PythonRubric = "PythonRubric"


# -- methods -------------------------------------------------------------------------------------


class MethodImplementationJupyterNotebook(SchemaModel):
    """A Method implemented as a Jupyter notebook in a Module."""

    notebookModule: str
    """The id of the Module that contains the notebook (it must also be in ``modules``)."""
    notebookPath: str
    """Path of the notebook relative to the Module's root."""


class MethodImplementationPythonFunction(SchemaModel):
    """A Method implemented as a Python function ``f(args, **inputs)``."""

    fullyQualifiedName: str
    """The function's fully-qualified name, e.g. ``mypackage.metrics.exact_match``."""


class MethodImplementationPythonRubric(SchemaModel):
    """A Method implemented as a reference-platform Rubric (deprecated)."""

    fullyQualifiedName: str
    """The Rubric's fully-qualified name."""


class MethodImplementation(SchemaModel):
    """How a Method is implemented: ``kind`` and the matching sub-field."""

    kind: MethodImplementationKind
    """The kind of implementation."""
    pythonFunction: MethodImplementationPythonFunction | None = None
    """The Python function, for ``kind = PythonFunction``."""
    pythonRubric: MethodImplementationPythonRubric | None = None
    """The Rubric, for ``kind = PythonRubric`` (deprecated)."""
    jupyterNotebook: MethodImplementationJupyterNotebook | None = None
    """The notebook, for ``kind = JupyterNotebook``."""


class MethodParameter(SchemaModel):
    """A parameter of a Method; its value is available as ``ctx.args(keyword)``."""

    keyword: str
    """The parameter's name."""
    description: str | None = None
    """What the parameter does; Markdown."""


class MethodInput(SchemaModel):
    """An input of a Method; its data is available as ``ctx.inputs(keyword)``."""

    kind: MethodInputKind
    """The kind of entity expected."""
    keyword: str
    """The input's name."""
    description: str | None = None
    """What the input is for; Markdown."""


class MeasurementSpec(SchemaModel):
    """Describes a Measurement output."""

    name: str
    """Descriptive name of the Measurement."""
    description: str | None = None
    """Long-form description; Markdown."""
    level: MeasurementLevel
    """Whether each row describes one instance or the whole data set."""
    schema_: DataSchema = Field(alias="schema")
    """Schema of the measurement data; instance-level data must include ``_index_``."""


class SafetyCaseSpec(SchemaModel):
    """Describes a SafetyCase output."""

    name: str
    """Descriptive name of the SafetyCase."""
    description: str | None = None
    """Long-form description; Markdown."""


class MethodOutput(SchemaModel):
    """What a Method produces: ``kind`` and the matching sub-field."""

    kind: MethodOutputKind
    """The kind of output."""
    measurement: MeasurementSpec | None = None
    """The Measurement, for ``kind = Measurement``."""
    safetyCase: SafetyCaseSpec | None = None
    """The SafetyCase, for ``kind = SafetyCase``."""


class MethodBase(SchemaModel):
    """The specification of a Method."""

    name: str
    """Descriptive name of the Method."""
    scope: MethodScope
    """The kind of entity each output is about."""
    description: str | None = None
    """Long-form description; Markdown."""
    implementation: MethodImplementation
    """How the Method is implemented."""
    parameters: list[MethodParameter] = Field(default_factory=list)
    """Parameters the Method accepts; values are available as ``ctx.args(keyword)``."""
    inputs: list[MethodInput] = Field(default_factory=list)
    """Entities the Method reads; data is available as ``ctx.inputs(keyword)``."""
    output: MethodOutput
    """What the Method produces."""
    scores: list[ScoreOrCurveSpec] = Field(default_factory=list)
    """The scores and curves the Method publishes (SafetyCase outputs)."""
    modules: list[str] = Field(default_factory=list)
    """Ids of the Modules to make importable when the Method runs."""
    analysisImage: ContainerImageSource | None = None
    """Container image to run the analysis in (reference platform)."""

    @pydantic.field_validator("scores")
    @classmethod
    def _check_scores(cls, scores: list[ScoreSpec | CurveSpec]) -> list[ScoreSpec | CurveSpec]:
        seen: dict[str, int] = {}
        for i, spec in enumerate(scores):
            if spec.name in seen:
                raise ValueError(
                    f"scores[{i}].name: {spec.name!r} is already used by "
                    f"scores[{seen[spec.name]}]; give every score and curve a unique name"
                )
            seen[spec.name] = i
        specs = [s for s in scores if isinstance(s, ScoreSpec)]
        if specs:
            primaries = [s.name for s in specs if s.priority == "primary"]
            if len(primaries) != 1:
                found = ", ".join(repr(n) for n in primaries) if primaries else "none"
                raise ValueError(
                    "scores: exactly one ScoreSpec must have priority='primary' (curves "
                    f"excluded); found {len(primaries)}: {found}. Mark the main score "
                    "'primary' and the others priority='secondary'"
                )
        return scores

    def module_ids(self) -> list[str]:
        """``modules`` plus the notebook's Module, without repeats."""
        extra = self.implementation.jupyterNotebook
        return list(dict.fromkeys([*self.modules, *([extra.notebookModule] if extra else [])]))

    def score_specs(self) -> list[ScoreSpec]:
        """The ScoreSpecs among :attr:`scores`."""
        return [s for s in self.scores if isinstance(s, ScoreSpec)]

    def curve_specs(self) -> list[CurveSpec]:
        """The CurveSpecs among :attr:`scores`."""
        return [s for s in self.scores if isinstance(s, CurveSpec)]


class Method(Entity, MethodBase):
    """An analysis procedure: a Python function or notebook with declared inputs and output."""

    kind: Literal["Method"] = "Method"
    """Always ``Method``."""

    def _dependencies(self) -> list[str | None]:
        return list(self.module_ids())

    def _query_refs(self) -> dict[str, list[str | None]]:
        return {"modules": list(self.module_ids())}


class ForeignMethod(ModelWithID, MethodBase):
    """A copy of the Method that an analysis ran."""


# -- analyses ------------------------------------------------------------------------------------


class AnalysisScope(SchemaModel):
    """The entities an analysis's results are about. An InferenceService-scoped Method needs
    at least ``inferenceService``; an Evaluation-scoped one ``evaluation``,
    ``inferenceService`` and ``dataset``."""

    dataset: str | None = None
    """The Dataset the results are about."""
    inferenceService: str | None = None
    """The InferenceService the results are about."""
    evaluation: str | None = None
    """The Evaluation the results are about."""
    model: str | None = None
    """The Model the results are about."""


class AnalysisInput(SchemaModel):
    """Binds an input keyword of the Method to an entity."""

    keyword: str
    """The input's keyword in the Method."""
    entity: str
    """The id of the entity whose data is given as ``keyword``."""


class AnalysisArgument(SchemaModel):
    """Binds a parameter keyword of the Method to a value."""

    keyword: str
    """The parameter's keyword in the Method."""
    value: str
    """The value, always a string; the implementation parses it."""


class AnalysisData(SchemaModel):
    """A small piece of data given to an analysis inline."""

    key: str
    """The name of the data."""
    value: str = Field(pattern=r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")
    """The data, base64-encoded."""


class AnalysisBase(SchemaModel):
    """The arguments of an analysis."""

    scope: AnalysisScope = Field(default_factory=AnalysisScope)
    """The entities the results are about; at least the one named by the Method's scope."""
    arguments: list[AnalysisArgument] = Field(default_factory=list)
    """Values of the Method's parameters."""
    inputs: list[AnalysisInput] = Field(default_factory=list)
    """Entities bound to the Method's inputs."""


class AnalysisRequestBase(AnalysisBase):
    """An analysis to run, naming its Method by id."""

    method: str
    """The id of the Method to run."""


class Analysis(AnalysisBase):
    """An analysis, carrying a copy of its Method."""

    method: ForeignMethod
    """The Method that is run."""
    data: list[AnalysisData] = Field(default_factory=list)
    """Inline data given to the analysis."""


class QueryableEntity(SchemaModel):
    """An entity named by its id and its name (``QueryableDyffEntity`` in the reference)."""

    id: str
    """The id of the entity."""
    name: str
    """The name of the entity."""


class AnalysisOutputQueryFields(SchemaModel):
    """What queries of analysis outputs (Measurements, SafetyCases, Scores) can filter on:
    the analysis that made them, its Method and its inputs."""

    analysis: str | None = None
    """The id of the analysis that produced the output."""
    method: QueryableEntity
    """The Method that was run to produce the output."""
    inputs: list[str] | None = None
    """The ids of the entities that were inputs to the analysis."""


def _analysis_refs(analysis: Analysis) -> dict[str, list[str | None]]:
    scope = analysis.scope
    return {
        "method": [analysis.method.id],
        "dataset": [scope.dataset],
        "evaluation": [scope.evaluation],
        "inferenceService": [scope.inferenceService],
        "model": [scope.model],
        "inputs": [x.entity for x in analysis.inputs],
    }


class Measurement(Entity, MeasurementSpec, Analysis):
    """The Arrow data produced by running a Measurement Method."""

    kind: Literal["Measurement"] = "Measurement"
    """Always ``Measurement``."""

    is_workflow: ClassVar[bool] = True

    def _dependencies(self) -> list[str | None]:
        return [self.method.id, *(x.entity for x in self.inputs)]

    def _query_refs(self) -> dict[str, list[str | None]]:
        return _analysis_refs(self)


class SafetyCase(Entity, SafetyCaseSpec, Analysis):
    """The document (with Scores and Curves) produced by running a SafetyCase Method."""

    kind: Literal["SafetyCase"] = "SafetyCase"
    """Always ``SafetyCase``."""

    is_workflow: ClassVar[bool] = True

    def _dependencies(self) -> list[str | None]:
        return [self.method.id, *(x.entity for x in self.inputs)]

    def _query_refs(self) -> dict[str, list[str | None]]:
        return _analysis_refs(self)
