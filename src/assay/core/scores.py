"""Scores: the scalar results a SafetyCase exports, queryable across systems."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from assay import errors
from assay.schema.platform import Curve, Score

if TYPE_CHECKING:
    from assay.core.platform import PlatformCore

__all__ = ["Scores"]

#: Query filters and the score field each matches.
_SCORE_FILTERS = (
    "id",
    "name",
    "analysis",
    "method",
    "dataset",
    "evaluation",
    "inferenceService",
    "model",
)


class Scores:
    """Operations on Score records (made by SafetyCase workflows)."""

    kind = "Score"

    def __init__(self, core: PlatformCore) -> None:
        self._core = core

    def get(self, *, analysis: str) -> list[Score]:
        """Every score the analysis ``analysis`` (a SafetyCase) produced."""
        return self.query(analysis=analysis)

    def query(self, **filters: Any) -> list[Score]:
        """Scores matching every filter (``name``, ``analysis``, ``method``, ``dataset``,
        ``evaluation``, ``inferenceService``, ``model``; a list means "any of"), e.g. the same
        score across systems: ``query(method=m, name="accuracy")``."""
        scores = [Score.model_validate(doc) for doc in self._query("Score", filters)]
        from assay import provenance

        known: dict[str, Any] = {}
        for score in scores:  # what each stands on (never on the wire: an excluded field)
            if score.analysis not in known:
                known[score.analysis] = provenance.lineage(self._core, score.analysis)
            score.provenance = known[score.analysis]
        return scores

    def curves(self, **filters: Any) -> list[Curve]:
        """Curves matching every filter (the same filters as :meth:`query`)."""
        return [Curve.model_validate(doc) for doc in self._query("Curve", filters)]

    def _query(self, kind: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
        unknown = sorted(set(filters) - set(_SCORE_FILTERS))
        if unknown:
            raise errors.ValidationError(
                f"Score query: unknown filter {', '.join(map(repr, unknown))}; valid filters "
                f"are {', '.join(_SCORE_FILTERS)}",
                field=unknown[0],
            )
        store_filters: dict[str, Any] = {}
        refs: dict[str, Any] = {}
        for key, value in filters.items():
            if value is None:
                continue
            if key == "id":
                store_filters["ids"] = value if isinstance(value, list | tuple) else [value]
            elif key == "name":
                store_filters["name"] = value
            else:
                refs[key] = value
        docs = self._core.store.query(kind=kind, refs=refs or None, **store_filters)
        return [_body(doc) for doc in docs]

    def _put(self, account: str, scores: Iterable[Score | Curve]) -> None:
        """Record scores and curves (called by the SafetyCase workflow once its outputs are
        written); a record of the same id is replaced."""
        for score in scores:
            refs = score.metadata.refs.model_dump(exclude_none=True)
            refs_lists = {k: [v] for k, v in refs.items() if isinstance(v, str)}
            refs_lists["analysis"] = [score.analysis]
            doc = {**score.to_wire(), "account": account, "status": "Ready"}
            if self._core.store.get(score.id) is not None:
                self._core.store.delete(score.id)
            self._core.store.create(doc, refs=refs_lists)

    def _purge(self, analysis: str) -> int:
        """Remove every score and curve the analysis ``analysis`` published (its ``purge``
        does); how many records were removed."""
        removed = 0
        for kind in ("Score", "Curve"):
            for doc in self._core.store.query(kind=kind, refs={"analysis": analysis}):
                removed += bool(self._core.store.delete(doc["id"]))
        return removed


def _body(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("account", "status")}
