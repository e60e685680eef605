"""Systems x scores: the scores a Method's safety cases published, one row per safety case,
and the paired differences of one score between every two rows.

A row is one SafetyCase (an *analysis*) and the system it is about (its InferenceService,
Model, Dataset and Evaluation, from the score's ``metadata.refs``). Two rows are compared
**paired** only when :func:`assay.provenance.compare` says their scores stand on identical
data and identical methods (the Dataset and Method digests of their chains), and both cases
have per-instance values for the score (:mod:`assay.comparison._instances`); the instances
both answered are joined by ``_index_``. Otherwise the pair says why not, and only the plain
difference of the two scores is given.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assay import errors, provenance
from assay.analysis import stats
from assay.comparison._instances import InstanceValues, instance_values
from assay.comparison._paired import PairedStatistics, paired_statistics
from assay.schema.platform import Score, ScoreSpec

__all__ = [
    "EVERYTHING",
    "MAX_PAIRED_ROWS",
    "PairedDifference",
    "SystemComparison",
    "SystemRow",
    "Visibility",
    "compare_method",
    "compare_scores",
]

#: The most rows whose every pair is compared (``k`` rows make ``k (k - 1) / 2`` pairs).
MAX_PAIRED_ROWS = 10


def _any_score(score: Score) -> bool:
    return True


def _any_entity(kind: str, account: str, id: str) -> bool:
    return True


@dataclass(frozen=True)
class Visibility:
    """What the caller may see: a comparison shows nothing else. The default sees
    everything (an embedded platform's one user); the web UI passes the API's checks."""

    score: Callable[[Score], bool] = _any_score
    """Whether a score may be shown (the score query's rule)."""
    name: Callable[[str, str, str], bool] = _any_entity
    """Whether an entity's name may be shown (kind, account, id); if not, its id is."""
    data: Callable[[str, str, str], bool] = _any_entity
    """Whether an entity's data may be read (per-instance values for a paired comparison)."""


#: Sees everything.
EVERYTHING = Visibility()


@dataclass(frozen=True)
class SystemRow:
    """One safety case and the system it is about, with its scores."""

    analysis: str
    """The SafetyCase."""
    label: str
    """How the row is named: the service's name (made unique among the rows)."""
    inference_service: str | None
    """The InferenceService measured."""
    model: str | None
    """Its Model, if any."""
    model_name: str | None
    """The Model's name (None where unknown or not visible)."""
    dataset: str | None
    """The Dataset."""
    dataset_name: str | None
    """The Dataset's name (None where unknown or not visible)."""
    evaluation: str | None
    """The Evaluation."""
    scores: dict[str, Score] = field(default_factory=dict)
    """The case's scores by name."""


@dataclass(frozen=True)
class PairedDifference:
    """Row ``a`` minus row ``b`` on one score."""

    score: str
    """The score's name."""
    a: str
    """Row ``a``'s analysis."""
    b: str
    """Row ``b``'s analysis."""
    a_label: str
    """Row ``a``'s label."""
    b_label: str
    """Row ``b``'s label."""
    paired: bool
    """Measured on the same instances with the same method, and compared instance by
    instance (``statistics`` is set)."""
    why: str
    """Why the pair is paired or not, in a sentence."""
    score_difference: float | None
    """``a``'s score minus ``b``'s, as published (None where one has no quantity)."""
    column: str | None = None
    """The per-instance column compared (paired only)."""
    statistics: PairedStatistics | None = None
    """The paired statistics (paired only)."""


@dataclass(frozen=True)
class SystemComparison:
    """Systems x scores, and the paired differences of one score."""

    method: str | None
    """The Method compared (None for a set of scores of several Methods)."""
    method_name: str | None
    """Its name."""
    specs: list[ScoreSpec]
    """The columns: one per score name, in the Method's order."""
    score: str | None
    """The score charted and compared pairwise (the primary one by default)."""
    rows: list[SystemRow]
    """One per safety case."""
    pairs: list[PairedDifference]
    """Every two of the rows compared pairwise (:attr:`paired_rows`)."""
    paired_rows: list[str]
    """The analyses of the rows compared pairwise: those asked for (every row by default)
    that have ``score``, at most :data:`MAX_PAIRED_ROWS`."""
    confidence: float
    """The level of the paired intervals."""
    seed: int
    """The bootstrap's seed."""
    rows_not_paired: int = 0
    """Rows asked for, with ``score``, left out of the pairs (beyond
    :data:`MAX_PAIRED_ROWS`)."""

    def spec(self, name: str) -> ScoreSpec | None:
        """The column named ``name``."""
        return next((s for s in self.specs if s.name == name), None)


def compare_method(
    core: Any,
    method: str,
    *,
    score: str | None = None,
    cases: Iterable[str] | None = None,
    pair: Iterable[str] | None = None,
    visibility: Visibility = EVERYTHING,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> SystemComparison:
    """The systems x scores of every safety case of the Method ``method`` (only the cases
    ``cases``, when given) that ``visibility`` shows, with the paired differences of
    ``score`` (default: the Method's primary score) between the rows ``pair`` (analyses;
    default: every row)."""
    entity = core.methods.require(method)
    specs = [s for s in entity.scores if isinstance(s, ScoreSpec)]
    if not specs:
        raise errors.ValidationError(
            f"Method {method} ({entity.name!r}) declares no scores, so there is nothing to "
            "compare; pick a Method whose output is a SafetyCase with scores",
            field="method",
            value=method,
            entity=method,
        )
    scores = core.scores.query(method=method)
    if cases is not None:
        wanted = set(cases)
        scores = [s for s in scores if s.analysis in wanted]
    return compare_scores(
        core,
        scores,
        specs=specs,
        score=score,
        pair=pair,
        visibility=visibility,
        confidence=confidence,
        seed=seed,
        method=(method, entity.name),
    )


def compare_scores(
    core: Any,
    scores: Sequence[Score],
    *,
    specs: Sequence[ScoreSpec] | None = None,
    score: str | None = None,
    pair: Iterable[str] | None = None,
    visibility: Visibility = EVERYTHING,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    seed: int = 0,
    method: tuple[str, str] | None = None,
) -> SystemComparison:
    """The systems x scores of ``scores`` (as ``scores.query`` returns them, with their
    provenance), with the paired differences of ``score`` between the rows ``pair``
    (analyses; default: every row). ``specs`` are the columns (default: every score name,
    in the order first seen); ``method`` the Method's id and name, if there is one."""
    shown = [s for s in scores if visibility.score(s)]
    columns = list(specs) if specs is not None else _specs(shown)
    names = [s.name for s in columns]
    if score is None:
        primary = [s.name for s in columns if s.priority == "primary"]
        score = next(iter(primary or names), None)
    elif score not in names:
        raise errors.ValidationError(
            f"comparison: there is no score {score!r} to compare; the scores are "
            f"{', '.join(names) or 'none'}",
            field="score",
            value=score,
        )
    rows = _rows(core, [s for s in shown if s.name in names], visibility)
    with_score = [r for r in rows if score in r.scores]
    if pair is not None:
        chosen = set(pair)
        with_score = [r for r in with_score if r.analysis in chosen]
    compared = with_score[:MAX_PAIRED_ROWS]
    pairs = []
    values: dict[str, InstanceValues | str] = {}
    for a, b in itertools.combinations(compared, 2):
        assert score is not None  # rows with the score exist only when it is set
        pairs.append(_pair(core, a, b, score, values, visibility, confidence, seed))
    return SystemComparison(
        method=method[0] if method else None,
        method_name=method[1] if method else None,
        specs=columns,
        score=score,
        rows=rows,
        pairs=pairs,
        paired_rows=[r.analysis for r in compared],
        confidence=confidence,
        seed=seed,
        rows_not_paired=len(with_score) - len(compared),
    )


def _specs(scores: Sequence[Score]) -> list[ScoreSpec]:
    seen: dict[str, ScoreSpec] = {}
    for s in scores:
        if s.name not in seen:
            seen[s.name] = ScoreSpec.model_validate(
                s.model_dump(include=set(ScoreSpec.model_fields))
            )
    return list(seen.values())


def _name(core: Any, visibility: Visibility, kind: str, id: str | None) -> str | None:
    if not id:
        return None
    record = core.store.get(id)
    if record is None:
        return None
    doc = record.doc
    if not visibility.name(kind, str(doc.get("account")), id):
        return None
    name = doc.get("name")
    return str(name) if name else None


def _rows(core: Any, scores: Sequence[Score], visibility: Visibility) -> list[SystemRow]:
    by_case: dict[str, list[Score]] = {}
    for s in scores:
        by_case.setdefault(s.analysis, []).append(s)
    rows = []
    for analysis, published in by_case.items():
        refs = published[0].metadata.refs
        service = refs.inferenceService
        service_name = _name(core, visibility, "InferenceService", service)
        base = service_name or (f"InferenceService {service[:8]}" if service else "no system")
        rows.append(
            SystemRow(
                analysis=analysis,
                label=base,
                inference_service=service,
                model=refs.model,
                model_name=_name(core, visibility, "Model", refs.model),
                dataset=refs.dataset,
                dataset_name=_name(core, visibility, "Dataset", refs.dataset),
                evaluation=refs.evaluation,
                scores={s.name: s for s in published},
            )
        )
    rows.sort(key=lambda r: (r.label, r.dataset_name or "", r.dataset or "", r.analysis))
    return _unique_labels(rows)


def _unique_labels(rows: list[SystemRow]) -> list[SystemRow]:
    """Labels made unique: the Dataset, then the safety case, added where needed."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.label] = counts.get(r.label, 0) + 1
    out = []
    for r in rows:
        label = r.label
        if counts[label] > 1:
            dataset = r.dataset_name or (r.dataset or "")[:8]
            label = f"{label} on {dataset} (case {r.analysis[:8]})"
        out.append(
            SystemRow(**{**r.__dict__, "label": label})  # frozen: a new row
        )
    return out


def _quantity(row: SystemRow, score: str) -> float | None:
    published = row.scores.get(score)
    return None if published is None else published.quantity


def _pair(
    core: Any,
    a: SystemRow,
    b: SystemRow,
    score: str,
    cache: dict[str, InstanceValues | str],
    visibility: Visibility,
    confidence: float,
    seed: int,
) -> PairedDifference:
    qa, qb = _quantity(a, score), _quantity(b, score)
    plain = None if qa is None or qb is None else qa - qb

    def unpaired(why: str) -> PairedDifference:
        return PairedDifference(score, a.analysis, b.analysis, a.label, b.label, False, why, plain)

    verdict = provenance.compare(a.scores[score], b.scores[score])
    if not verdict.paired:
        return unpaired(verdict.why)
    found = []
    for row in (a, b):
        if row.analysis not in cache:
            cache[row.analysis] = instance_values(core, row.analysis, score, visibility.data)
        found.append(cache[row.analysis])
    va, vb = found
    if isinstance(va, str) or isinstance(vb, str):
        reason = va if isinstance(va, str) else vb
        return unpaired(f"not paired: identical data and methods, but {reason}")
    if va.column != vb.column:
        return unpaired(
            f"not paired: the per-instance columns differ ({va.column!r} in Measurement "
            f"{va.measurement}, {vb.column!r} in Measurement {vb.measurement})"
        )
    common, ia, ib = np.intersect1d(va.index, vb.index, assume_unique=True, return_indices=True)
    if not common.size:
        return unpaired(
            "not paired: identical data and methods, but no instance has a value on both sides"
        )
    statistics = paired_statistics(va.values[ia], vb.values[ib], confidence=confidence, seed=seed)
    only = va.index.size + vb.index.size - 2 * common.size
    why = (
        f"paired: identical data and methods; {common.size:,} instances compared on "
        f"{va.column!r}" + (f" ({only:,} with a value on one side only left out)" if only else "")
    )
    return PairedDifference(
        score,
        a.analysis,
        b.analysis,
        a.label,
        b.label,
        True,
        why,
        plain,
        column=va.column,
        statistics=statistics,
    )
