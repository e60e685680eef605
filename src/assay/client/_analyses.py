"""Evaluations, Measurements, SafetyCases and Scores on the server: their data (``open``),
logs (``logs``, ``log_lines``: :class:`~assay.client._groups.WorkflowLogs`), scores, curves
and documents."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from assay import errors
from assay.client._groups import TerminableGroup, WorkflowLogs, parse_answer, query_params
from assay.client._uploads import open_cached

if TYPE_CHECKING:
    import pyarrow.dataset

    from assay.client._client import Client
    from assay.schema.platform import (
        Curve,
        Entity,
        Evaluation,  # noqa: F401  (the groups' type arguments, in quotes)
        Measurement,  # noqa: F401  (the groups' type arguments, in quotes)
        SafetyCase,  # noqa: F401  (the groups' type arguments, in quotes)
        Score,
    )

__all__ = ["Evaluations", "Measurements", "SafetyCases", "Scores"]

#: The rendered document of a safety case, among its artifacts.
DOCUMENT_FILE = "index.html"

A = TypeVar("A", bound="Entity")


class _OutputData:
    """``open(id)`` for kinds whose workflow writes Parquet data: every visible ``.parquet``
    artifact, once the workflow is ``Complete``."""

    def open(self, id: str) -> pyarrow.dataset.Dataset:
        """The workflow's output data as a ``pyarrow.dataset.Dataset``: its files are
        downloaded to the client's cache directory (once; md5 checked) and read from there."""
        group: Any = self
        entity = group.require(id)
        group._require_success(entity, "open")
        return open_cached(group, entity, None)

    def data_paths(self, entity: Any) -> list[str]:
        """The artifact paths of the entity's Parquet data."""
        group: Any = self
        links = group._artifacts.links(group.resource, group.kind, entity.id)
        return [link.path for link in links if link.path.endswith(".parquet")]


class Evaluations(_OutputData, WorkflowLogs, TerminableGroup["Evaluation"]):
    kind = "Evaluation"
    resource = "evaluations"
    request_name = "EvaluationCreateRequest"

    def local_evaluation(self, *, dataset: str, inferencesession: str) -> str:
        """Evaluate the Dataset ``dataset`` with the running session ``inferencesession`` (an
        Evaluation with ``inferenceSessionReference``); returns the evaluation's id."""
        session = self._client.inferencesessions.require(inferencesession)
        request = {
            "account": session.account,
            "dataset": dataset,
            "inferenceSessionReference": inferencesession,
        }
        return self.create(request).id


class _Analyses(WorkflowLogs, TerminableGroup[A]):
    """Measurements and safety cases: both apply a Method to some inputs."""

    request_name = "AnalysisCreateRequest"


class Measurements(_OutputData, _Analyses["Measurement"]):
    kind = "Measurement"
    resource = "measurements"


class SafetyCases(_Analyses["SafetyCase"]):
    kind = "SafetyCase"
    resource = "safetycases"

    def scores(self, id: str) -> list[Score]:
        """The scores the safety case ``id`` published."""
        from assay.schema.platform import Score

        scores = [parse_answer(Score, s, "Score") for s in self._call("GET", id, "scores")]
        return with_lineage(self._transport, scores)

    def curves(self, id: str) -> list[Curve]:
        """The curves the safety case ``id`` published."""
        from assay.schema.platform import Curve

        return [parse_answer(Curve, c, "Curve") for c in self._call("GET", id, "curves")]

    def document(self, id: str) -> str:
        """The rendered document (one self-contained HTML page) of a ``Complete`` safety
        case."""
        response = self._transport.send("GET", self._path(id, "document"), kind=self.kind, id=id)
        return response.content.decode("utf-8")

    def document_path(self, id: str) -> Path:
        """A local file of the safety case's HTML document (to open in a browser), downloaded
        to the client's cache directory."""
        entity = self.require(id)
        self._require_success(entity, "read the document of")
        files = self._artifacts.cached(
            self.resource, self.kind, id, wanted=lambda link: link.path == DOCUMENT_FILE
        )
        if not files:
            raise errors.NotFoundError(f"SafetyCase {id} has no document", kind=self.kind, id=id)
        return files[0]


class Scores:
    """Score and Curve records (published by safety cases), across systems."""

    kind = "Score"

    def __init__(self, client: Client) -> None:
        self._transport = client._transport

    def get(self, *, analysis: str) -> list[Score]:
        """Every score the analysis ``analysis`` (a SafetyCase) produced."""
        return self.query(analysis=analysis)

    def query(self, **filters: Any) -> list[Score]:
        """Scores matching every filter (``name``, ``analysis``, ``method``, ``dataset``,
        ``evaluation``, ``inferenceService``, ``model``; a list means "any of") that the token
        may see, e.g. the same score across systems: ``query(method=m, name="accuracy")``."""
        from assay.schema.platform import Score

        scores = [parse_answer(Score, s, "Score") for s in self._query("/scores", filters)]
        return with_lineage(self._transport, scores)

    def curves(self, **filters: Any) -> list[Curve]:
        """Curves matching every filter (the same filters as :meth:`query`)."""
        from assay.schema.platform import Curve

        return [
            parse_answer(Curve, c, "Curve") for c in self._query("/safetycases/curves", filters)
        ]

    def _query(self, path: str, filters: dict[str, Any]) -> list[Any]:
        params = query_params(filters)
        if params is None:
            return []
        answer: list[Any] = self._transport.json("GET", path, params=params, kind="Score")
        return answer


def with_lineage(transport: Any, scores: list[Score]) -> list[Score]:
    """``scores``, each with its ``provenance`` (what it stands on: the server's
    ``/safetycases/{analysis}/lineage``), as LocalPlatform's ``scores.query`` gives them."""
    known: dict[str, Any] = {}
    for score in scores:
        if score.analysis not in known:
            try:
                known[score.analysis] = transport.json(
                    "GET", f"/safetycases/{score.analysis}/lineage"
                )
            except errors.NotFoundError:
                known[score.analysis] = None
        score.provenance = known[score.analysis]
    return scores
