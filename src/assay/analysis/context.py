"""``AnalysisContext``: what a running Method sees — its arguments, its input data, where to
write, and (in notebooks) the widgets that publish a safety case's scores.

An analysis process is started by the platform with the environment variable
``ASSAY_ANALYSIS_CONFIG`` naming a JSON file (see :func:`write_config`); ``AnalysisContext()``
reads it. The file is plain JSON so that a Python-function measurement starts without loading
the platform's schema models; :attr:`AnalysisContext.analysis` builds them on first use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay import errors

if TYPE_CHECKING:
    import pyarrow
    import pyarrow.dataset

    from assay.schema.platform import CurveSpec, ForeignMethod, ScoreSpec

__all__ = ["CONFIG_ENV", "AnalysisContext", "read_schema", "write_config"]

#: The environment variable that names an analysis process's configuration file.
CONFIG_ENV = "ASSAY_ANALYSIS_CONFIG"


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    """Write an analysis configuration (see :class:`AnalysisContext`) to ``path``."""
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")
    return path


def read_schema(encoded: str | None) -> pyarrow.Schema | None:
    """The Arrow schema of a ``DataSchema.arrowSchema`` (base64 IPC), or None."""
    if not encoded:
        return None
    import base64

    import pyarrow as pa
    import pyarrow.ipc

    return pyarrow.ipc.read_schema(pa.py_buffer(base64.b64decode(encoded)))


class AnalysisContext:
    """The running analysis, as its Method sees it.

    Inside an analysis started by the platform, ``AnalysisContext()`` needs no arguments.
    ``config`` is a path to a configuration file or the configuration itself (a mapping with
    ``analysis`` — the Measurement or SafetyCase as JSON —, ``inputs`` — keyword →
    ``{"kind", "id", "files": [Parquet paths], "schema": base64 Arrow schema or null}`` —,
    ``output`` — the directory to write to — and optionally ``system``).
    """

    def __init__(self, config: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> None:
        if config is None:
            location = os.environ.get(CONFIG_ENV)
            if not location:
                raise errors.ValidationError(
                    "AnalysisContext(): no analysis is running here (the environment variable "
                    f"{CONFIG_ENV} is not set). The platform sets it when it runs a Method; "
                    "to try a Method by hand, pass AnalysisContext(config) a mapping with "
                    "'analysis', 'inputs' and 'output'"
                )
            config = location
        loaded: Mapping[str, Any] = (
            config
            if isinstance(config, Mapping)
            else json.loads(Path(config).read_text(encoding="utf-8"))
        )
        self._config = loaded
        self._analysis_doc: dict[str, Any] = dict(loaded["analysis"])
        self._inputs: dict[str, Any] = dict(loaded.get("inputs") or {})
        self._output = Path(loaded["output"])
        self._arguments = {
            a["keyword"]: a["value"] for a in self._analysis_doc.get("arguments") or []
        }
        method = self._analysis_doc["method"]
        self._parameters = [p["keyword"] for p in method.get("parameters") or []]
        self._score_docs = {s["name"]: s for s in method.get("scores") or []}
        self._published: set[str] = set()
        self._analysis: Any = None
        self._opened: dict[str, pyarrow.dataset.Dataset] = {}

    # -- what the analysis is ----------------------------------------------------------

    @property
    def analysis(self) -> Any:
        """The Measurement or SafetyCase being computed (an entity model)."""
        if self._analysis is None:
            from assay.schema.platform import Measurement, SafetyCase

            kind = self._analysis_doc.get("kind")
            model = SafetyCase if kind == "SafetyCase" else Measurement
            self._analysis = model.model_validate(self._analysis_doc)
        return self._analysis

    @property
    def analysis_id(self) -> str:
        """The id of the Measurement or SafetyCase being computed."""
        return str(self._analysis_doc["id"])

    @property
    def method(self) -> ForeignMethod:
        """The Method being run."""
        method: ForeignMethod = self.analysis.method
        return method

    @property
    def system(self) -> dict[str, Any]:
        """What the analysis is about: the ids in its scope (``dataset``, ``evaluation``,
        ``inferenceService``, ``model``) and, where the platform knows them, the names
        (``inferenceServiceName``, ``modelName``, ``datasetName``)."""
        scope = dict(self._analysis_doc.get("scope") or {})
        scope.update(self._config.get("system") or {})
        return scope

    # -- arguments -----------------------------------------------------------------------

    @property
    def arguments(self) -> dict[str, str]:
        """Every argument given, keyword → value (always strings)."""
        return dict(self._arguments)

    def args(self, keyword: str) -> str:
        """The value of the argument ``keyword`` (a string); an error if the Method has no
        such parameter or the analysis did not give it (see :meth:`get_argument`)."""
        self._check_parameter(keyword)
        try:
            return str(self._arguments[keyword])
        except KeyError:
            raise errors.ValidationError(
                f"analysis {self.analysis_id}: no value was given for the argument "
                f"{keyword!r}; given: {sorted(self._arguments) or 'none'}. Use "
                "ctx.get_argument(keyword, default) for optional arguments",
                field="arguments",
                value=keyword,
            ) from None

    def get_argument(self, keyword: str, default: str | None = None) -> str | None:
        """The value of the argument ``keyword``, or ``default`` when it was not given."""
        self._check_parameter(keyword)
        return self._arguments.get(keyword, default)

    def _check_parameter(self, keyword: str) -> None:
        if keyword not in self._parameters:
            raise errors.ValidationError(
                f"analysis {self.analysis_id}: {keyword!r} is not a parameter of the Method; "
                f"its parameters are {self._parameters or 'none'}",
                field="arguments",
                value=keyword,
            )

    # -- inputs and output ------------------------------------------------------------------

    @property
    def input_keywords(self) -> list[str]:
        """The keywords of the inputs."""
        return list(self._inputs)

    def input_id(self, keyword: str) -> str:
        """The id of the entity bound to the input ``keyword``."""
        return str(self._input(keyword)["id"])

    def inputs(self, keyword: str) -> pyarrow.dataset.Dataset:
        """The data of the input ``keyword`` as a ``pyarrow.dataset.Dataset`` (read lazily:
        use ``to_batches()`` / ``scanner(columns=...)`` for large data)."""
        return self.open_input_dataset(keyword)

    def open_input_dataset(self, keyword: str) -> pyarrow.dataset.Dataset:
        """Same as :meth:`inputs`."""
        if keyword not in self._opened:
            self._opened[keyword] = open_input(self._input(keyword))
        return self._opened[keyword]

    def _input(self, keyword: str) -> Mapping[str, Any]:
        try:
            spec: Mapping[str, Any] = self._inputs[keyword]
        except KeyError:
            raise errors.ValidationError(
                f"analysis {self.analysis_id}: {keyword!r} is not an input; the inputs are "
                f"{sorted(self._inputs) or 'none'}",
                field="inputs",
                value=keyword,
            ) from None
        return spec

    @property
    def output_path(self) -> Path:
        """The directory the analysis writes its output files to."""
        return self._output

    # -- widgets (safety-case notebooks) ---------------------------------------------------

    def TitleCard(
        self, *, headline: str, author: str, summary_phrase: str, summary_text: str
    ) -> None:
        """Display the safety case's title card."""
        from assay.analysis import widgets

        widgets.display_bundle(
            widgets.title_card(
                headline=headline,
                author=author,
                summary_phrase=summary_phrase,
                summary_text=summary_text,
            )
        )

    def Conclusion(self, *, indicator: str, text: str) -> None:
        """Display a conclusion: ``indicator`` is ``Information``, ``Question`` or ``Hazard``;
        ``text`` is Markdown."""
        from assay.analysis import widgets

        widgets.display_bundle(widgets.conclusion(indicator=indicator, text=text))

    def Score(
        self,
        output: str,
        text: str,
        quantity: float,
        *,
        interval: tuple[float, float] | None = None,
        confidence: float = 0.95,
    ) -> None:
        """Publish and display the score ``output`` (a ScoreSpec name of the Method) with
        the value ``quantity``, a sentence ``text`` and, optionally, a confidence
        ``interval``. Each score is published once; a value outside the spec's
        minimum/maximum is refused."""
        from assay.analysis import widgets

        spec = self._spec(output, curve=False)
        bundle = widgets.score(
            spec,  # type: ignore[arg-type]
            quantity=quantity,
            text=text,
            interval=interval,
            confidence=confidence,
        )
        self._published.add(output)
        widgets.display_bundle(bundle)

    def Curve(self, output: str, text: str, points: Mapping[str, Sequence[float]]) -> None:
        """Publish and display the curve ``output`` (a CurveSpec name of the Method):
        ``points`` maps each of the spec's dimensions to its values (all of one length)."""
        from assay.analysis import widgets

        spec = self._spec(output, curve=True)
        bundle = widgets.curve(spec, points=points, text=text)  # type: ignore[arg-type]
        self._published.add(output)
        widgets.display_bundle(bundle)

    def _spec(self, name: str, *, curve: bool) -> ScoreSpec | CurveSpec:
        from assay.schema.platform import CurveSpec, ScoreSpec

        what = "curve" if curve else "score"
        doc = self._score_docs.get(name)
        names = sorted(n for n, d in self._score_docs.items() if ("dimensions" in d) == curve)
        if doc is None or ("dimensions" in doc) != curve:
            raise errors.ValidationError(
                f"analysis {self.analysis_id}: the Method declares no {what} {name!r}; its "
                f"{what}s are {names or 'none'} (declare it in the Method's scores)",
                field="scores",
                value=name,
            )
        if name in self._published:
            raise errors.ValidationError(
                f"analysis {self.analysis_id}: the {what} {name!r} was already published; "
                "publish each score once",
                field="scores",
                value=name,
            )
        return CurveSpec.model_validate(doc) if curve else ScoreSpec.model_validate(doc)


def open_input(spec: Mapping[str, Any]) -> pyarrow.dataset.Dataset:
    """An input's files (``spec["files"]``) as one ``pyarrow.dataset.Dataset``."""
    import pyarrow.dataset as ds

    files = list(spec.get("files") or [])
    schema = read_schema(spec.get("schema"))
    if not files:
        import pyarrow as pa

        return ds.dataset(schema.empty_table() if schema is not None else pa.table({}))
    return ds.dataset(files, format="parquet", schema=schema)
