"""Explainability configs: which inputs of logged traffic drive a model step's score.

An :class:`ExplainabilityConfig` names a model step of a pipeline (its service), a window of
the pipeline's logged traffic (``start_datetime`` / ``end_datetime``, and/or the
``last_records``), the numeric input features to explain (the ``in.*`` columns of the
records) and the output field that is the score. Running it calls the step's service — the
session the deployed version runs for it, so the calls are not logged as traffic — on the
window's inputs with the features perturbed, which gives one attribution per row and feature:

- ``permutation`` (always available): for each feature and each of ``repeats`` rounds, the
  feature's values are permuted across the window's rows and the service scores every row
  again; a row's attribution is the mean absolute change of its score;
- ``kernelshap`` (needs the ``shap`` package): the absolute KernelSHAP value of the feature
  for the row, against a background of ``background`` rows of the window.

The attributions are stored as a Dataset and summarised by the built-in Method
``explainability.attributions`` (:mod:`assay.analysis.builtin.explain`), run as a
Measurement scoped to the step's InferenceService: one row per feature with ``attribution``
(the mean over the rows), its bootstrap interval ``low`` / ``high``, ``n`` and ``method``.
The Measurement and the Dataset are labelled ``assay.io/explainability-config: <config id>``.
Configs are stored as ``ExplainabilityConfig`` documents in the platform's entity store, like
pipeline versions, so they outlive the process. Design notes: ``docs/design/pipelines.md``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import tempfile
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from assay import errors
from assay.pipelines.catalog import ANSWERING
from assay.pipelines.definition import ModelStep

__all__ = [
    "CONFIG_LABEL",
    "KIND",
    "METHODS",
    "ConfigStore",
    "ExplainabilityConfig",
    "ExplainabilityConfigs",
    "ExplainabilityResult",
]

KIND = "ExplainabilityConfig"
#: The label of the Measurement and Dataset of each run: the config's id.
CONFIG_LABEL = "assay.io/explainability-config"
#: The ways of computing attributions.
METHODS = ("permutation", "kernelshap")
#: Requests sent to the step's service per call.
_CHUNK = 1024

Floats = NDArray[np.float64]
#: Scores a list of requests: one float per request.
Scorer = Callable[[list[dict[str, Any]]], Floats]


class ExplainabilityConfig(BaseModel):
    """What to explain, over which traffic, and how. Made by
    ``pipeline.create_explainability_config(...)``; never changed once stored."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    id: str
    """The id of the stored document."""
    pipeline: str
    """The name of the pipeline."""
    account: str
    """The account that owns the pipeline."""
    created: datetime
    """When the config was stored."""
    model_step: str
    """The id of the InferenceService explained: a service of the pipeline's first step that
    calls one (its input is the pipeline's input row, logged as ``in.*``)."""
    model_step_name: str
    """The service's name when the config was made."""
    output: str | None
    """The numeric field of the service's first output that is the score (dots for nested
    fields); None: the only numeric field, found when it runs."""
    start_datetime: datetime | None
    """The window's start (inclusive, UTC); None: from the first record."""
    end_datetime: datetime | None
    """The window's end (exclusive, UTC); None: to the last record."""
    last_records: int | None
    """Only the newest this many records of the window; None: all of them."""
    features: list[str] | None
    """The input features explained (without ``in.``); None: every input column of the
    window's records but the platform's ``_name_`` ones."""
    method: Literal["permutation", "kernelshap"]
    """How attributions are computed."""
    repeats: int
    """Permutation: rounds of permutations per feature."""
    background: int
    """KernelSHAP: rows of the window drawn as the background."""
    samples: int | None
    """KernelSHAP: model evaluations per explained row (None: shap's default)."""
    resamples: int
    """Bootstrap resamples behind each interval."""
    confidence: float
    """Confidence level of the intervals."""
    seed: int
    """Seed of the permutations, the background draw, KernelSHAP's sampling and the
    bootstrap: the same seed over the same window gives the same table."""


@dataclass(frozen=True)
class ExplainabilityResult:
    """What one run of a config gave."""

    config: ExplainabilityConfig
    """The config that ran."""
    measurement: Any
    """The ``Complete`` Measurement (``explainability.attributions``)."""
    table: pa.Table
    """Its data: ``feature``, ``attribution``, ``low``, ``high``, ``n``, ``method``."""
    attributions: Any
    """The Dataset of per-row attributions the Measurement summarises."""
    rows: int
    """Rows of the window explained."""
    left_out: int
    """Rows of the window left out because an explained feature was null or NaN."""
    start: datetime
    """Time of the window's first record."""
    end: datetime
    """Time of the window's last record."""


class ConfigStore:
    """The explainability configs of one pipeline in an :class:`assay.store.EntityStore`."""

    def __init__(self, store: Any, *, pipeline: str, account: str) -> None:
        self._store = store
        self._pipeline = pipeline
        self._account = account

    def list(self) -> list[ExplainabilityConfig]:
        """Every config, oldest first."""
        docs = self._store.query(kind=KIND, account=self._account, name=self._pipeline)
        configs = [ExplainabilityConfig.model_validate(doc["config"]) for doc in docs]
        return sorted(configs, key=lambda c: (c.created, c.id))

    def get(self, id: str) -> ExplainabilityConfig:
        """Config ``id``; NotFoundError listing the pipeline's configs."""
        if not isinstance(id, str):
            raise errors.ValidationError(
                f"an explainability config id must be a string, got {type(id).__name__}",
                field="id",
            )
        record = self._store.get(id, kind=KIND)
        if (
            record is None
            or record.doc.get("account") != self._account
            or record.doc.get("name") != self._pipeline
        ):
            known = [c.id for c in self.list()]
            raise errors.NotFoundError(
                f"pipeline {self._pipeline!r} has no explainability config {id!r}; its configs "
                f"are {known or 'none (make one with create_explainability_config)'}",
                kind=KIND,
                id=id,
            )
        return ExplainabilityConfig.model_validate(record.doc["config"])

    def add(self, config: ExplainabilityConfig) -> None:
        """Store ``config`` (once; its id is new)."""
        self._store.create(
            {
                "id": config.id,
                "kind": KIND,
                "account": self._account,
                "name": self._pipeline,
                "status": "Ready",
                "created": config.created.isoformat(),
                "config": config.model_dump(mode="json"),
            }
        )


class ExplainabilityConfigs:
    """The explainability methods of a pipeline with an inference log
    (:class:`~assay.pipelines.LoggedPipeline`)."""

    def create_explainability_config(
        self,
        model_step: Any,
        *,
        start_datetime: datetime | None = None,
        end_datetime: datetime | None = None,
        last_records: int | None = None,
        features: Sequence[str] | None = None,
        output: str | None = None,
        method: str = "permutation",
        repeats: int = 5,
        background: int = 20,
        samples: int | None = None,
        resamples: int = 1000,
        confidence: float = 0.95,
        seed: int = 0,
    ) -> ExplainabilityConfig:
        """Store a config that explains ``model_step`` — a service of the pipeline's first
        step that calls one (its name, its id, the InferenceService, or the index of a model
        step) — over a window of logged traffic: ``[start_datetime, end_datetime)``, and/or
        the newest ``last_records`` of it (none given: every record). ``features``: the
        numeric input features (``in.<name>`` or ``<name>``; default all input columns, which
        must then all be numeric). ``output``: the numeric output field that is the score
        (default: the only numeric one). ``method``: ``permutation`` (``repeats`` rounds) or
        ``kernelshap`` (the ``shap`` package; ``background`` rows, ``samples`` evaluations
        per row). ``resamples``, ``confidence``, ``seed``: the bootstrap intervals."""
        return _Explainer(self).create(
            model_step,
            start_datetime=start_datetime,
            end_datetime=end_datetime,
            last_records=last_records,
            features=features,
            output=output,
            method=method,
            repeats=repeats,
            background=background,
            samples=samples,
            resamples=resamples,
            confidence=confidence,
            seed=seed,
        )

    def list_explainability_configs(self) -> list[ExplainabilityConfig]:
        """The explainability configs of this pipeline, oldest first."""
        return _Explainer(self).configs.list()

    def get_explainability_config(self, id: str) -> ExplainabilityConfig:
        """The explainability config ``id`` of this pipeline."""
        return _Explainer(self).configs.get(id)

    def run_explainability_config(self, config: ExplainabilityConfig | str) -> ExplainabilityResult:
        """Run the config (or the config with that id) over its window of traffic now: the
        step's service is called on the perturbed inputs (the pipeline must be deployed),
        and the per-feature attributions are stored as a Measurement."""
        return _Explainer(self).run(config)

    def explainability_results(self, config: ExplainabilityConfig | str) -> list[Any]:
        """The Measurements of every run of the config, oldest first."""
        explainer = _Explainer(self)
        id = config.id if isinstance(config, ExplainabilityConfig) else config
        explainer.configs.get(id)
        measurements: list[Any] = explainer.core.measurements.query(
            account=explainer.account, labels={CONFIG_LABEL: id}
        )
        return measurements


class _Explainer:
    """The work behind :class:`ExplainabilityConfigs`, for one pipeline."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.core: Any = pipeline._core
        self.account: str = pipeline.account
        self.name: str = pipeline.name
        self.configs = ConfigStore(self.core.store, pipeline=self.name, account=self.account)

    def _refuse(self, message: str, field: str, value: Any = None) -> errors.ValidationError:
        return errors.ValidationError(
            f"pipeline {self.name!r}: explainability config: {message}", field=field, value=value
        )

    # -- creating ----------------------------------------------------------------------------

    def create(
        self,
        model_step: Any,
        *,
        start_datetime: datetime | None,
        end_datetime: datetime | None,
        last_records: int | None,
        features: Sequence[str] | None,
        output: str | None,
        method: str,
        repeats: int,
        background: int,
        samples: int | None,
        resamples: int,
        confidence: float,
        seed: int,
    ) -> ExplainabilityConfig:
        service = self._step_service(model_step)
        start = self._time(start_datetime, "start_datetime")
        end = self._time(end_datetime, "end_datetime")
        if start is not None and end is not None and start >= end:
            raise self._refuse(
                f"the window is empty: start_datetime {start.isoformat()} is not before "
                f"end_datetime {end.isoformat()}",
                "end_datetime",
            )
        if last_records is not None:
            self._count(last_records, "last_records", 1)
        if method not in METHODS:
            raise self._refuse(
                f"method must be one of {', '.join(METHODS)}, got {method!r}", "method", method
            )
        if method == "kernelshap":
            _require_shap()
        for value, field, least in (
            (repeats, "repeats", 1),
            (background, "background", 1),
            (resamples, "resamples", 1),
            (seed, "seed", 0),
        ):
            self._count(value, field, least)
        if samples is not None:
            self._count(samples, "samples", 2)
        if (
            isinstance(confidence, bool)
            or not isinstance(confidence, int | float)
            or not 0 < confidence < 1
        ):
            raise self._refuse(
                f"confidence must be a number between 0 and 1, got {confidence!r}",
                "confidence",
                confidence,
            )
        names = self._feature_names(features)
        score_field = self._output_field(service, output)
        config = ExplainabilityConfig(
            id=uuid.uuid4().hex,
            pipeline=self.name,
            account=self.account,
            created=datetime.now(UTC),
            model_step=service,
            model_step_name=self.pipeline._catalog.name_of(service),
            output=score_field,
            start_datetime=start,
            end_datetime=end,
            last_records=last_records,
            features=names,
            method=method,
            repeats=repeats,
            background=background,
            samples=samples,
            resamples=resamples,
            confidence=float(confidence),
            seed=seed,
        )
        self.configs.add(config)
        return config

    def _step_service(self, model_step: Any) -> str:
        """The id of the service ``model_step`` names, checked to read the input row."""
        catalog = self.pipeline._catalog
        steps = self.pipeline.definition.steps
        lines = self.pipeline.definition.describe(catalog.name_of)
        first = next((i for i, s in enumerate(steps) if isinstance(s, ANSWERING)), None)
        if first is None:
            raise self._refuse(
                "the pipeline has no step that calls a service (add_model_step first)",
                "model_step",
            )
        readers = steps[first].services()  # a shadow's challengers read the input row too
        candidates = ", ".join(repr(catalog.name_of(s)) for s in dict.fromkeys(readers))
        if isinstance(model_step, int) and not isinstance(model_step, bool):
            if not 0 <= model_step < len(steps):
                raise self._refuse(
                    f"model_step {model_step} is not a step index; the steps are: "
                    f"{'; '.join(lines)}",
                    "model_step",
                    model_step,
                )
            chosen = steps[model_step]
            if not isinstance(chosen, ModelStep):
                raise self._refuse(
                    f"step {lines[model_step]} is not a model step; name the service to "
                    f"explain instead ({candidates})",
                    "model_step",
                    model_step,
                )
            service = chosen.service
        else:
            wanted = model_step if isinstance(model_step, str) else getattr(model_step, "id", None)
            if not isinstance(wanted, str):
                raise self._refuse(
                    "model_step must name a service of the pipeline (its name or id, the "
                    f"InferenceService, or a step index), got {type(model_step).__name__}",
                    "model_step",
                )
            every = self.pipeline.definition.services()
            matches = [s for s in every if s == wanted] or [
                s for s in every if catalog.name_of(s) == wanted
            ]
            if not matches:
                raise self._refuse(
                    f"no step of the pipeline calls a service {wanted!r}; the steps are: "
                    f"{'; '.join(lines)} (explainable: {candidates})",
                    "model_step",
                    wanted,
                )
            if len(matches) > 1:
                raise self._refuse(
                    f"{len(matches)} services of the pipeline are named {wanted!r}; give the "
                    f"id of one: {', '.join(matches)}",
                    "model_step",
                    wanted,
                )
            service = matches[0]
        if service not in readers:
            at = next(i for i, s in enumerate(steps) if service in s.services())
            raise self._refuse(
                f"service {catalog.name_of(service)!r} is called by step {lines[at]}, after "
                f"step {lines[first]}: its input is an earlier step's output, not the logged "
                f"input (in.*); explain a service of step {first} ({candidates})",
                "model_step",
                model_step if isinstance(model_step, str | int) else service,
            )
        return str(service)

    def _time(self, value: Any, field: str) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise self._refuse(
                f"{field} must be a datetime.datetime, got {type(value).__name__} {value!r}",
                field,
            )
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)

    def _count(self, value: Any, field: str, least: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise self._refuse(
                f"{field} must be an integer of at least {least}, got {value!r}", field, value
            )

    def _feature_names(self, features: Sequence[str] | None) -> list[str] | None:
        """The features without ``in.``, checked against the input schema if declared."""
        if features is None:
            return None
        if isinstance(features, str) or not all(isinstance(f, str) and f for f in features):
            raise self._refuse(
                f"features must be a list of input feature names, got {features!r}", "features"
            )
        names = [f.removeprefix("in.") for f in features]
        if not names or len(set(names)) != len(names):
            raise self._refuse(
                f"features must name at least one feature, each once, got {list(features)}",
                "features",
            )
        schema = self.pipeline.definition.input_schema()
        if schema is not None:
            declared = dict(_flat_fields(schema))
            unknown = [n for n in names if n not in declared]
            if unknown:
                raise self._refuse(
                    f"features {unknown} are not input columns; the input schema declares "
                    f"{', '.join(declared)}",
                    "features",
                )
            _refuse_non_numeric(self.name, {n: declared[n] for n in names}, given=True)
        return names

    def _output_field(self, service: str, output: str | None) -> str | None:
        """``output`` (without ``out.``) checked against the service's output schema, or the
        only numeric field it declares; None where the schema says nothing."""
        if output is not None and (not isinstance(output, str) or not output):
            raise self._refuse(f"output must be a field name, got {output!r}", "output", output)
        wanted = None if output is None else output.removeprefix("out.")
        item = self.pipeline._catalog.item_schema(service)
        if item is None:
            return wanted
        fields = dict(_flat_fields(item))
        numeric = [n for n, t in fields.items() if _numeric(t)]
        service_name = self.pipeline._catalog.name_of(service)
        if wanted is None:
            if len(numeric) == 1:
                return numeric[0]
            raise self._refuse(
                f"service {service_name!r} declares {len(numeric) or 'no'} numeric output "
                f"fields ({', '.join(numeric) or 'its fields: ' + ', '.join(fields)}); name the "
                "score with output=...",
                "output",
            )
        if wanted not in fields:
            raise self._refuse(
                f"service {service_name!r} has no output field {wanted!r}; its fields are "
                f"{', '.join(fields)}",
                "output",
                wanted,
            )
        if wanted not in numeric:
            raise self._refuse(
                f"output field {wanted!r} of service {service_name!r} is {fields[wanted]}, not "
                f"a number; the score must be numeric ({', '.join(numeric) or 'none is'})",
                "output",
                wanted,
            )
        return wanted

    # -- running -----------------------------------------------------------------------------

    def run(self, config: ExplainabilityConfig | str) -> ExplainabilityResult:
        id = config.id if isinstance(config, ExplainabilityConfig) else config
        config = self.configs.get(id)
        shap = _require_shap() if config.method == "kernelshap" else None
        window = self._window(config)
        columns, kinds = self._features(config, window)
        values = [window.column(c).to_pylist() for c in columns]
        keep = [
            i
            for i in range(window.num_rows)
            if all(v[i] is not None and math.isfinite(v[i]) for v in values)
        ]
        if len(keep) < 2:
            raise self._refuse(
                f"the window holds {len(keep)} record(s) with a value for every explained "
                f"feature ({window.num_rows} in all); at least 2 are needed",
                "window",
            )
        records = window.take(pa.array(keep, pa.int64()))
        requests = _requests(records)
        originals = [[v[i] for i in keep] for v in values]
        matrix = np.asarray(originals, dtype=np.float64).T
        names = [c.removeprefix("in.") for c in columns]
        with self._scorer(config) as score:
            if shap is None:
                found = _permutation(score, requests, names, originals, config)
            else:
                found = _kernelshap(shap, score, requests, names, kinds, matrix, config)
        times = records.column("time")
        dataset, measurement, table = self._measure(config, names, found, times)
        return ExplainabilityResult(
            config=config,
            measurement=measurement,
            table=table,
            attributions=dataset,
            rows=len(keep),
            left_out=window.num_rows - len(keep),
            start=times[0].as_py(),
            end=times[-1].as_py(),
        )

    def _window(self, config: ExplainabilityConfig) -> pa.Table:
        """The window's records (``time`` and ``in.*``), oldest first."""
        log = self.pipeline.log
        ranged = config.start_datetime is not None or config.end_datetime is not None
        if config.last_records is not None and not ranged:
            table, _ = log.read(limit=config.last_records, dataset=["time", "in"])
        else:
            table, _ = log.read(
                limit=None,
                start_datetime=config.start_datetime,
                end_datetime=config.end_datetime,
                dataset=["time", "in"],
            )
        table = table.sort_by([("time", "ascending")])
        if config.last_records is not None and table.num_rows > config.last_records:
            table = table.slice(table.num_rows - config.last_records)
        if table.num_rows == 0:
            window = _describe_window(config)
            held = log.counters()["written"]
            raise self._refuse(
                f"the window {window} holds no logged records (the log holds {held}); widen "
                "the window or send traffic first",
                "window",
            )
        return table

    def _features(
        self, config: ExplainabilityConfig, window: pa.Table
    ) -> tuple[list[str], list[type]]:
        """The explained columns (``in.<feature>``) and each one's Python type (int, float)."""
        inputs = {
            n: window.schema.field(n).type for n in window.column_names if n.startswith("in.")
        }
        if config.features is None:
            chosen = {n: t for n, t in inputs.items() if not n.startswith("in._")}
            if not chosen:
                raise self._refuse("the window's records have no input columns (in.*)", "features")
            given = False
        else:
            missing = [f for f in config.features if f"in.{f}" not in inputs]
            if missing:
                raise self._refuse(
                    f"features {missing} are not input columns of the window's records; they "
                    f"have {', '.join(n.removeprefix('in.') for n in inputs) or 'none'}",
                    "features",
                )
            chosen = {f"in.{f}": inputs[f"in.{f}"] for f in config.features}
            given = True
        _refuse_non_numeric(
            self.name, {n.removeprefix("in."): t for n, t in chosen.items()}, given=given
        )
        kinds: list[type] = [int if pa.types.is_integer(t) else float for t in chosen.values()]
        return list(chosen), kinds

    @contextlib.contextmanager
    def _scorer(self, config: ExplainabilityConfig) -> Any:
        """A scorer over the session the deployed version runs for the step's service."""
        from assay.pipelines.runner import STEPS_ARTIFACT

        session = self.pipeline.inference_session
        service_name = self.pipeline._catalog.name_of(config.model_step)
        steps: dict[str, str] = {}
        if session is not None:
            with contextlib.suppress(errors.NotFoundError):
                steps = json.loads(self.core.storage.read_bytes(session, STEPS_ARTIFACT))
        step_session = steps.get(config.model_step)
        if step_session is None:
            state = "is not deployed" if session is None else "runs a version without it"
            raise errors.ConflictError(
                f"pipeline {self.name!r} {state}: explainability config {config.id} calls "
                f"service {service_name!r} through the deployed pipeline; deploy a version "
                "with that service first"
            )
        sessions = self.core.inferencesessions
        client = sessions.client(step_session, sessions.token(step_session))
        field = config.output

        def score(requests: list[dict[str, Any]]) -> Floats:
            nonlocal field
            out = np.empty(len(requests))
            for begin in range(0, len(requests), _CHUNK):
                replies = client.infer_many(requests[begin : begin + _CHUNK])
                for offset, reply in enumerate(replies):
                    if field is None:
                        field = _only_numeric(self.name, service_name, reply)
                    out[begin + offset] = _score(self.name, service_name, reply, field)
            return out

        try:
            yield score
        finally:
            client.close()

    def _measure(
        self, config: ExplainabilityConfig, names: list[str], found: Floats, times: Any
    ) -> tuple[Any, Any, pa.Table]:
        """Store the per-row attributions as a Dataset and summarise them as a Measurement."""
        core = self.core
        n, d = found.shape
        rows = np.repeat(np.arange(n, dtype=np.int64), d)
        table = pa.table(
            {
                "_index_": pa.array(np.arange(n * d, dtype=np.int64)),
                "row": pa.array(rows),
                "time": times.take(pa.array(rows)),
                "feature": pa.array(names * n, pa.string()),
                "attribution": pa.array(found.reshape(-1), pa.float64()),
            }
        )
        label = {CONFIG_LABEL: config.id}
        with tempfile.TemporaryDirectory(prefix=f"explain-{self.name}-") as folder:
            pq.write_table(table, Path(folder) / "attributions.parquet")
            dataset = core.datasets.create_arrow_dataset(
                folder, account=self.account, name=f"{self.name} explainability {config.id}"
            )
            dataset = core.datasets.upload_arrow_dataset(dataset, folder)
        dataset = core.datasets.wait(dataset.id)
        if dataset.status != "Ready":
            raise errors.PlatformError(
                f"pipeline {self.name!r}: explainability config {config.id}: the Dataset of "
                f"attributions {dataset.id} is {dataset.status}: {dataset.message}"
            )
        # labelled once its workflow is done, so that no write of the workflow races this one
        _add_labels(core, dataset.id, label)
        dataset = core.datasets.require(dataset.id)
        arguments = {
            "method": config.method,
            "resamples": str(config.resamples),
            "confidence": repr(config.confidence),
            "seed": str(config.seed),
        }
        measurement = core.measurements.create(
            {
                "account": self.account,
                "method": self._method(),
                "scope": {"inferenceService": config.model_step},
                "inputs": [{"keyword": "attributions", "entity": dataset.id}],
                "arguments": [{"keyword": k, "value": v} for k, v in arguments.items()],
            }
        )
        measurement = core.measurements.wait(measurement.id)
        _add_labels(core, measurement.id, label)
        if measurement.status != "Complete":
            raise errors.PlatformError(
                f"pipeline {self.name!r}: explainability config {config.id}: Measurement "
                f"{measurement.id} is {measurement.status}: {measurement.message}"
            )
        measurement = core.measurements.require(measurement.id)
        data: pa.Table = core.measurements.open(measurement.id).to_table()
        return dataset, measurement, data

    def _method(self) -> str:
        """The id of the account's ``explainability.attributions`` Method (made once)."""
        from assay.analysis.builtin import explain

        request = explain.request(account=self.account)
        wanted = request.model_dump(mode="json", by_alias=True, exclude={"account"})
        for method in self.core.methods.query(account=self.account, name=explain.NAME):
            found = method.model_dump(mode="json", by_alias=True)
            if all(found.get(k) == v for k, v in wanted.items() if k != "schemaVersion"):
                return str(method.id)
        return str(self.core.methods.create(request).id)


# -- attributions ------------------------------------------------------------------------------


def _permutation(
    score: Scorer,
    requests: list[dict[str, Any]],
    names: list[str],
    originals: list[list[Any]],
    config: ExplainabilityConfig,
) -> Floats:
    """Per row and feature: the mean absolute change of the score over ``repeats`` rounds in
    which the feature's values are permuted across the rows."""
    n, d = len(requests), len(names)
    rng = np.random.default_rng(config.seed)
    base = score(requests)
    total = np.zeros((n, d))
    for _ in range(config.repeats):
        for j, name in enumerate(names):
            order = rng.permutation(n)
            moved = [_with(r, name, originals[j][k]) for r, k in zip(requests, order, strict=True)]
            total[:, j] += np.abs(score(moved) - base)
    result: Floats = total / config.repeats
    return result


def _kernelshap(
    shap: Any,
    score: Scorer,
    requests: list[dict[str, Any]],
    names: list[str],
    kinds: list[type],
    matrix: Floats,
    config: ExplainabilityConfig,
) -> Floats:
    """Per row and feature: the absolute KernelSHAP value, against a background of rows of
    the window drawn with the seed. KernelSHAP draws its coalitions from numpy's global
    generator, which is seeded for the call and then restored."""
    n, d = matrix.shape
    rng = np.random.default_rng(config.seed)
    drawn = np.sort(rng.choice(n, size=min(config.background, n), replace=False))
    background = matrix[drawn]
    options: dict[str, Any] = {"silent": True}
    if config.samples is not None:
        options["nsamples"] = config.samples
    out = np.empty((n, d))
    state = np.random.get_state()
    try:
        np.random.seed(config.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # shap's own notices (singular fits, deprecations)
            for i, template in enumerate(requests):

                def model(points: Floats, template: dict[str, Any] = template) -> Floats:
                    return score(
                        [_filled(template, names, kinds, p) for p in np.atleast_2d(points)]
                    )

                explainer = shap.KernelExplainer(model, background)
                values = explainer.shap_values(matrix[i], **options)
                out[i] = np.abs(np.asarray(values, dtype=np.float64).reshape(d))
    finally:
        np.random.set_state(state)
    return out


def _filled(
    template: dict[str, Any], names: list[str], kinds: list[type], point: Floats
) -> dict[str, Any]:
    request = template
    for name, kind, value in zip(names, kinds, point, strict=True):
        request = _with(request, name, round(float(value)) if kind is int else float(value))
    return request


def _with(request: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    """A copy of ``request`` with the (dotted) field ``name`` set to ``value``."""
    head, _, rest = name.partition(".")
    copy = dict(request)
    if rest:
        inner = copy.get(head)
        copy[head] = _with(inner if isinstance(inner, dict) else {}, rest, value)
    else:
        copy[head] = value
    return copy


def _requests(records: pa.Table) -> list[dict[str, Any]]:
    """The input rows of the records, rebuilt from ``in.*`` (dotted names nested again;
    fields that are null left out)."""
    columns = [c for c in records.column_names if c.startswith("in.")]
    rows: list[dict[str, Any]] = []
    for record in records.select(columns).to_pylist():
        row: dict[str, Any] = {}
        for column, value in record.items():
            if value is not None:
                row = _with(row, column.removeprefix("in."), value)
        rows.append(row)
    return rows


def _score(pipeline: str, service: str, reply: list[dict[str, Any]], field: str) -> float:
    value: Any = reply[0] if reply else None
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        first = json.dumps(reply[0], default=str)[:200] if reply else "no output"
        raise errors.ValidationError(
            f"pipeline {pipeline!r}: explainability: the output field {field!r} of service "
            f"{service!r} must be a finite number, got {value!r} (its first output: {first}); "
            "name the score with output=...",
            field="output",
            value=field,
        )
    return float(value)


def _only_numeric(pipeline: str, service: str, reply: list[dict[str, Any]]) -> str:
    """The only numeric field of the first output (where the service declares no schema)."""
    flat: dict[str, Any] = {}
    _flatten("", reply[0] if reply else {}, flat)
    numeric = [
        k
        for k, v in flat.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]
    if len(numeric) != 1:
        raise errors.ValidationError(
            f"pipeline {pipeline!r}: explainability: service {service!r} answers with "
            f"{len(numeric) or 'no'} numeric fields ({', '.join(numeric) or ', '.join(flat)}); "
            "name the score with output=... in a new config",
            field="output",
        )
    return numeric[0]


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif prefix:
        out[prefix] = value


# -- helpers -------------------------------------------------------------------------------


def _flat_fields(schema: Any) -> list[tuple[str, pa.DataType]]:
    """``(dotted name, type)`` of the leaves of a schema's (or struct's) fields."""
    found: list[tuple[str, pa.DataType]] = []
    for field in schema:
        if pa.types.is_struct(field.type) and field.type.num_fields:
            found += [(f"{field.name}.{n}", t) for n, t in _flat_fields(field.type)]
        else:
            found.append((field.name, field.type))
    return found


def _numeric(type: pa.DataType) -> bool:
    return bool(pa.types.is_integer(type) or pa.types.is_floating(type))


def _refuse_non_numeric(pipeline: str, types: dict[str, pa.DataType], *, given: bool) -> None:
    bad = {n: str(t) for n, t in types.items() if not _numeric(t)}
    if not bad:
        return
    listed = ", ".join(f"{n!r} ({t})" for n, t in bad.items())
    numeric = [n for n, t in types.items() if _numeric(t)]
    fix = (
        "leave them out of features"
        if given
        else f"name the numeric ones with features=[...] ({', '.join(numeric) or 'there are none'})"
    )
    raise errors.ValidationError(
        f"pipeline {pipeline!r}: explainability config: features {listed} are not numeric; "
        f"attributions are computed for numeric (integer or floating-point) input features "
        f"only: {fix}",
        field="features",
        value=sorted(bad),
    )


def _add_labels(core: Any, id: str, labels: dict[str, str]) -> None:
    """Add platform labels (``assay.io/``, which users may not set) to entity ``id``."""

    def mutate(doc: dict[str, Any]) -> dict[str, Any]:
        doc["labels"] = {**(doc.get("labels") or {}), **labels}
        return doc

    core.store.update(id, mutate)


def _describe_window(config: ExplainabilityConfig) -> str:
    parts = [
        f"[{config.start_datetime.isoformat() if config.start_datetime else '-inf'}, "
        f"{config.end_datetime.isoformat() if config.end_datetime else '+inf'})"
    ]
    if config.last_records is not None:
        parts.append(f"(the newest {config.last_records} records)")
    return " ".join(parts)


def _require_shap() -> Any:
    """The ``shap`` module; a clear error if it is not installed."""
    try:
        return importlib.import_module("shap")
    except ImportError:
        raise errors.ValidationError(
            "explainability method 'kernelshap' needs the shap package, which is not "
            "installed: pip install shap (or pip install 'assay[explain]'); method "
            "'permutation' needs nothing more",
            field="method",
            value="kernelshap",
        ) from None
