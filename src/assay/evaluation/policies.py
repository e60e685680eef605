"""The output policies of an evaluation's client: what it does when the integrity check
(``integrity.py``) finds an (``_index_``, ``_replication_``) pair answered more than once
(``duplicateOutputPolicy``), or an expected pair not answered or one not expected
(``missingOutputPolicy``). See ``docs/design/evaluation.md``, "Output policies".

- ``duplicateOutputPolicy``: ``Deduplicate`` (the default) rewrites the output files that
  hold the extra rows without them (:func:`deduplicate`) and completes, so that every reader
  sees one row per pair; ``Error`` fails the evaluation (reason ``Unverified``), leaving the
  output as it was written; ``Ignore`` completes with every row.
- ``missingOutputPolicy`` (pairs missing, and rows whose pair was not expected): ``Error``
  (the default) fails the evaluation (reason ``Incomplete``); ``Ignore`` completes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from assay.evaluation.parts import DATA_PREFIX, ERRORS_PREFIX, write_parquet

if TYPE_CHECKING:
    import pyarrow

    from assay.evaluation.integrity import Integrity, Problems
    from assay.schema.platform import EvaluationClientConfiguration
    from assay.storage import ArtifactStorage

__all__ = ["completed", "deduplicate", "failure", "pair_text"]


def pair_text(pair: tuple[Any, Any] | None) -> str:
    """``_index_ 3, _replication_ 'c0ffee…'``, for a message."""
    if pair is None:
        return "?"
    return f"_index_ {pair[0]!r}, _replication_ {pair[1]!r}"


def failure(
    result: Integrity, problems: Problems | None, config: EvaluationClientConfiguration
) -> tuple[str, str] | None:
    """``(which policy failed the evaluation, why)``, or None when the policies let it
    complete; ``problems`` (:func:`~assay.evaluation.integrity.locate_problems`) gives the
    example pairs. Duplicates are judged first: their policy is the one named when both
    fail."""
    found = problems
    reasons: list[tuple[str, str]] = []
    if result.duplicates and config.duplicateOutputPolicy == "Error":
        example = pair_text(found.duplicate if found else None)
        reasons.append(
            (
                "duplicateOutputPolicy",
                f"{result.duplicates:,} duplicate outputs (e.g. {example}) and "
                "client.duplicateOutputPolicy is Error ('Deduplicate' keeps one output per "
                "pair, 'Ignore' keeps them all)",
            )
        )
    if (result.missing or result.unexpected) and config.missingOutputPolicy == "Error":
        counts = []
        if result.missing:
            counts.append(
                f"{result.missing:,} missing outputs "
                f"(e.g. {pair_text(found.missing if found else None)})"
            )
        if result.unexpected:
            counts.append(
                f"{result.unexpected:,} unexpected outputs "
                f"(e.g. {pair_text(found.unexpected if found else None)})"
            )
        reasons.append(
            (
                "missingOutputPolicy",
                f"{' and '.join(counts)} and client.missingOutputPolicy is Error ('Ignore' "
                "completes without them)",
            )
        )
    if not reasons:
        return None
    return reasons[0][0], "; ".join(text for _, text in reasons)


def completed(result: Integrity, config: EvaluationClientConfiguration) -> str:
    """What the message of a completed evaluation says of its output, after the summary."""
    notes: list[str] = []
    if result.deduplicated:
        notes.append(
            f"{result.deduplicated:,} duplicate outputs removed "
            f"(client.duplicateOutputPolicy is {config.duplicateOutputPolicy})"
        )
    if result.duplicates:
        notes.append(
            f"{result.duplicates:,} duplicate outputs kept "
            f"(client.duplicateOutputPolicy is {config.duplicateOutputPolicy})"
        )
    if result.missing or result.unexpected:
        notes.append(
            f"{result.missing:,} missing, {result.unexpected:,} unexpected outputs "
            f"(client.missingOutputPolicy is {config.missingOutputPolicy})"
        )
    if result.ok:
        notes.append("integrity verified")
    return "; ".join(notes)


def deduplicate(
    storage: ArtifactStorage, entity_id: str, extra_rows: Mapping[str, list[int]]
) -> list[str]:
    """Remove the rows ``extra_rows`` (path → positions, as
    :attr:`~assay.evaluation.integrity.Problems.extra_rows` gives them) from the output files
    of ``entity_id``, returning the paths of the files changed (rewritten or deleted).

    Each file is rewritten without its extra rows, atomically, and its error records
    (``.assay/errors/<part name>``) keep only the pairs left in it, once each; a file left with
    no rows is deleted with its errors. Since every pair's first row (in the order of the
    files) is kept, a run stopped half-way and done again removes the rest and no more; the
    errors are written before the data, as parts are, and errors left without their data
    are dropped when a run starts (:func:`~assay.evaluation.parts.drop_unfinished`)."""
    changed: list[str] = []
    for path, rows in extra_rows.items():
        if not rows:
            continue
        table = _read(storage, entity_id, path)
        keep = [True] * table.num_rows
        for r in rows:
            keep[r] = False
        errors_path = ERRORS_PREFIX + path.removeprefix(DATA_PREFIX)
        has_errors = path.startswith(DATA_PREFIX) and storage.exists(entity_id, errors_path)
        if not any(keep):
            storage.delete(entity_id, path)
            if has_errors:
                storage.delete(entity_id, errors_path)
            changed.append(path)
            continue
        import pyarrow as pa

        kept = table.filter(pa.array(keep))
        if has_errors:
            _keep_errors_of(storage, entity_id, errors_path, kept)
        write_parquet(storage, entity_id, path, kept)
        changed.append(path)
    return changed


def _read(storage: ArtifactStorage, entity_id: str, path: str) -> pyarrow.Table:
    import pyarrow.parquet as pq

    filesystem, base = storage.arrow_location(entity_id, "")
    base = base.rstrip("/")
    return pq.read_table(f"{base}/{path}" if base else path, filesystem=filesystem)


def _keep_errors_of(
    storage: ArtifactStorage, entity_id: str, errors_path: str, kept: pyarrow.Table
) -> None:
    """Rewrite the error records ``errors_path`` with only the pairs in ``kept``, once each
    (the first record of a pair)."""
    import pyarrow as pa

    errors = _read(storage, entity_id, errors_path)
    left = set(
        zip(
            kept.column("_index_").to_pylist(),
            kept.column("_replication_").to_pylist(),
            strict=True,
        )
    )
    pairs = zip(
        errors.column("_index_").to_pylist(),
        errors.column("_replication_").to_pylist(),
        strict=True,
    )
    wanted: list[bool] = []
    for pair in pairs:
        wanted.append(pair in left)
        left.discard(pair)
    if all(wanted):
        return
    write_parquet(storage, entity_id, errors_path, errors.filter(pa.array(wanted, pa.bool_())))
