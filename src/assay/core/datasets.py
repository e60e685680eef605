"""Datasets: Arrow data sets registered from a directory of Parquet files."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay import errors, provenance
from assay.core.uploads import UploadGroup, file_md5, list_files
from assay.engine import WorkflowContext, WorkflowResult
from assay.schema.dataschema import DataSchema
from assay.schema.platform import Dataset
from assay.schema.requests import DatasetCreateRequest

if TYPE_CHECKING:
    import pyarrow
    import pyarrow.dataset

__all__ = [
    "Datasets",
    "arrow_dataset_request",
    "ingest_dataset",
    "open_entity_data",
    "pipeline_traffic",
]

INDEX = "_index_"


def _read_parquet_schema(path: Path, what: str) -> pyarrow.Schema:
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path)
    except Exception as exc:
        raise errors.DataIntegrityError(
            f"{what}: {str(path)!r} is not a readable Parquet file ({exc}); "
            "replace or remove the file",
            field="artifacts",
            value=str(path),
        ) from None


def arrow_dataset_request(
    dataset_directory: str | Path, *, account: str | None = None, name: str
) -> dict[str, Any]:
    """The create request of a Dataset describing the Parquet files under
    ``dataset_directory``: every file checked (readable, one schema, an int64 ``_index_``
    column) and its md5 recorded. Used by ``create_arrow_dataset`` locally and remotely.
    Without ``account`` the request names none (the group fills in its default)."""
    what = f"Dataset {name!r}"
    root = list_files(Path(dataset_directory), what)
    files = sorted(
        p
        for p in root.rglob("*.parquet")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise errors.ValidationError(
            f"{what}: no .parquet files under {str(root)!r}; write the data set with "
            "pyarrow.dataset.write_dataset(..., format='parquet') first",
            field="dataset_directory",
            value=str(root),
        )
    schema = _read_parquet_schema(files[0], what)
    for path in files[1:]:
        other = _read_parquet_schema(path, what)
        if not other.remove_metadata().equals(schema.remove_metadata()):
            raise errors.ValidationError(
                f"{what}: {path.relative_to(root)} has a different schema from "
                f"{files[0].relative_to(root)}; every file of a data set must have one schema",
                field="artifacts",
                value=str(path),
            )
    _check_index_field(schema, what)
    artifacts = [
        {
            "kind": "parquet",
            "path": p.relative_to(root).as_posix(),
            "digest": {"md5": file_md5(p)},
        }
        for p in files
    ]
    request: dict[str, Any] = {
        "name": name,
        "artifacts": artifacts,
        "schema": DataSchema.from_arrow(schema).model_dump(by_alias=True),
    }
    if account is not None:
        request["account"] = account
    return request


class Datasets(UploadGroup[Dataset]):
    kind = "Dataset"
    request_type = DatasetCreateRequest

    def create_arrow_dataset(
        self, dataset_directory: str | Path, *, account: str | None = None, name: str
    ) -> Dataset:
        """Create a Dataset describing the Parquet files under ``dataset_directory``; then call
        :meth:`upload_arrow_dataset`. Every file is checked (readable, one schema, an int64
        ``_index_`` column) and its md5 recorded before anything is registered. ``account``
        defaults to the platform's."""
        return self.create(arrow_dataset_request(dataset_directory, account=account, name=name))

    def create_from_pipeline_logs(
        self,
        pipeline: Any,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        name: str | None = None,
        valid: bool | None = None,
    ) -> tuple[Dataset, Any]:
        """A window ``[start, end)`` of a pipeline's logged traffic (a pipeline from
        ``platform.pipelines``) as a ``Ready`` Dataset of its inputs and a ``Complete``
        Evaluation of its outputs, so that Methods can audit production traffic. Returns both."""
        return pipeline_traffic(pipeline, start, end, name=name, valid=valid)

    def upload_arrow_dataset(
        self, dataset: Dataset | str, dataset_directory: str | Path
    ) -> Dataset:
        """Upload the files of a Dataset made by :meth:`create_arrow_dataset` and ingest them.
        Returns the Dataset (``Ready``, or ``Error`` with ``reason = IngestFailed``)."""
        entity = self.require(dataset if isinstance(dataset, str) else dataset.id)
        return self._upload_directory(entity, Path(dataset_directory))

    def open(self, id: str) -> pyarrow.dataset.Dataset:
        """The data set's data as a ``pyarrow.dataset.Dataset`` (read lazily)."""
        entity = self.require(id)
        self._require_success(entity, "open")
        return open_entity_data(self._core, entity, self.data_paths(entity))

    def data_paths(self, entity: Dataset) -> list[str]:
        """The artifact paths of the data set's Parquet files."""
        return [a.path for a in entity.artifacts]


def _check_index_field(schema: pyarrow.Schema, what: str) -> None:
    import pyarrow as pa

    index = schema.field(INDEX) if INDEX in schema.names else None
    if index is None:
        raise errors.ValidationError(
            f"{what}: the data has no {INDEX!r} column; every instance needs a unique int64 "
            f"{INDEX!r} (e.g. table.append_column('{INDEX}', pa.array(range(n), pa.int64())))",
            field=INDEX,
        )
    if not pa.types.is_integer(index.type):
        raise errors.ValidationError(
            f"{what}: column {INDEX!r} has type {index.type}, expected int64",
            field=INDEX,
            value=str(index.type),
        )


def open_entity_data(core: Any, entity: Any, paths: list[str]) -> pyarrow.dataset.Dataset:
    import pyarrow.dataset as ds

    filesystem, base = core.storage.arrow_location(entity.id, "")
    base = base.rstrip("/")
    sources = [f"{base}/{p}" if base else p for p in paths]
    if not sources:
        raise errors.NotFoundError(
            f"{entity.kind} {entity.id} has no data files", kind=entity.kind, id=entity.id
        )
    schema = entity.schema_.arrow_schema() if getattr(entity, "schema_", None) else None
    return ds.dataset(sources, format="parquet", filesystem=filesystem, schema=schema)


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def ingest_dataset(ctx: WorkflowContext) -> WorkflowResult:
    """Check a Dataset's uploaded files: readable Parquet, the declared schema, and a unique
    non-null ``_index_``. Any problem fails the Dataset with ``IngestFailed`` and says which
    file and what to fix."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    entity: Dataset = ctx.entity  # type: ignore[assignment]
    what = f"Dataset {entity.id}"
    declared = entity.schema_.arrow_schema()
    storage = ctx.storage
    filesystem, base = storage.arrow_location(entity.id, "")
    base = base.rstrip("/")
    rows = 0
    for artifact in entity.artifacts:
        location = f"{base}/{artifact.path}" if base else artifact.path
        try:
            with filesystem.open_input_file(location) as f:
                metadata = pq.read_metadata(f)
        except Exception as exc:
            raise errors.DataIntegrityError(
                f"{what}: artifact {artifact.path!r} is not a readable Parquet file ({exc})"
            ) from None
        schema = metadata.schema.to_arrow_schema()
        for field in declared:
            if field.name not in schema.names:
                raise errors.DataIntegrityError(
                    f"{what}: artifact {artifact.path!r} has no column {field.name!r}, which the "
                    "declared schema has"
                )
            if not schema.field(field.name).type.equals(field.type):
                raise errors.DataIntegrityError(
                    f"{what}: column {field.name!r} of {artifact.path!r} is "
                    f"{schema.field(field.name).type}, the declared schema says {field.type}"
                )
        rows += metadata.num_rows
    if INDEX in declared.names:
        data = ds.dataset(
            [f"{base}/{a.path}" if base else a.path for a in entity.artifacts],
            format="parquet",
            filesystem=filesystem,
        )
        column = data.to_table(columns=[INDEX]).column(INDEX)
        if column.null_count:
            raise errors.DataIntegrityError(
                f"{what}: {column.null_count} instances have a null {INDEX!r}"
            )
        unique = pc.count_distinct(column).as_py()
        if unique != len(column):
            raise errors.DataIntegrityError(
                f"{what}: {INDEX!r} is not unique ({len(column) - unique} duplicate values); "
                "give every instance its own index"
            )
    # provenance: the digest of the data, computed once, here
    files = {a.path: storage.sha256(entity.id, a.path) for a in entity.artifacts}
    provenance.record(ctx.platform, entity.id, provenance.make("Dataset", entity.id, files=files))
    return WorkflowResult(
        message=f"{plural(rows, 'instance')} in {plural(len(entity.artifacts), 'file')}"
    )


def pipeline_traffic(
    pipeline: Any,
    start: datetime | None,
    end: datetime | None,
    *,
    name: str | None,
    valid: bool | None,
) -> tuple[Any, Any]:
    """``pipeline.to_dataset(...)`` for ``create_from_pipeline_logs`` (here and on a Client):
    a clear error for anything without an inference log."""
    to_dataset = getattr(pipeline, "to_dataset", None)
    if to_dataset is None:
        raise errors.ValidationError(
            f"create_from_pipeline_logs: {type(pipeline).__name__} has no inference log; use a "
            "pipeline from platform.pipelines.create(name) (or client.pipelines)",
            field="pipeline",
        )
    dataset, evaluation = to_dataset(start, end, name=name, valid=valid)
    return dataset, evaluation
