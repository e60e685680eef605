"""Importing evaluation outputs made elsewhere as a ``Complete`` Evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay import errors
from assay.core.datasets import plural
from assay.core.groups import iso
from assay.engine.transitions import utc_now
from assay.evaluation.integrity import INTEGRITY_ANNOTATION, check_integrity
from assay.schema import ids
from assay.schema._request_base import lacks_account
from assay.schema.base import validate_model
from assay.schema.dataschema import DataSchema
from assay.schema.platform import Evaluation
from assay.schema.requests import EvaluationCreateRequest
from assay.schema.status import Status

if TYPE_CHECKING:
    import pyarrow

    from assay.core.kinds import Evaluations

__all__ = ["import_evaluation"]


def _check_schema(schema: pyarrow.Schema, path: Path, what: str) -> None:
    import pyarrow as pa

    def need(name: str, ok: bool, expected: str) -> None:
        if not ok:
            found = str(schema.field(name).type) if name in schema.names else "missing"
            raise errors.ValidationError(
                f"{what}: {path.name} column {name!r} is {found}, expected {expected} (the "
                "evaluation output schema: _index_, _replication_, responses)",
                field=name,
                value=str(path),
            )

    names = schema.names
    need(
        "_index_",
        "_index_" in names and pa.types.is_integer(schema.field("_index_").type),
        "an integer",
    )
    need(
        "_replication_",
        "_replication_" in names and pa.types.is_string(schema.field("_replication_").type),
        "a string",
    )
    responses = schema.field("responses").type if "responses" in names else None
    need(
        "responses",
        responses is not None
        and pa.types.is_list(responses)
        and pa.types.is_struct(responses.value_type),
        "a list of structs",
    )


def import_evaluation(
    group: Evaluations, directory: Path, *, id: str | None, request: Any, account: str | None
) -> Evaluation:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    what = "Evaluation import"
    if not directory.is_dir():
        raise errors.ValidationError(
            f"{what}: {str(directory)!r} is not a directory", field="dataset_directory"
        )
    files = sorted(
        p
        for p in directory.rglob("*.parquet")
        if not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )
    if not files:
        raise errors.ValidationError(
            f"{what}: no .parquet files under {str(directory)!r}", field="dataset_directory"
        )
    schemas = []
    for path in files:
        try:
            schemas.append(pq.read_schema(path))
        except Exception as exc:
            raise errors.DataIntegrityError(
                f"{what}: {path.name} is not a readable Parquet file ({exc})"
            ) from None
        _check_schema(schemas[-1], path, what)
    data = ds.dataset([str(p) for p in files], format="parquet", schema=schemas[0])
    pairs = data.to_table(columns=["_index_", "_replication_"])
    replications = sorted(set(pairs.column("_replication_").unique().to_pylist()))
    indices = pairs.column("_index_").unique()
    integrity = check_integrity(data, indices, replications)
    if integrity.duplicates:
        raise errors.DataIntegrityError(
            f"{what}: {integrity.duplicates:,} (_index_, _replication_) pairs appear more than once; "
            "an evaluation holds each exactly once"
        )
    if id is not None and not ids.is_entity_id(id):
        raise errors.ValidationError(
            f"{what}: id {id!r} is not an entity id (32 lowercase hex digits)", field="id"
        )

    if request is not None:
        if account and lacks_account(request):
            request = {**request, "account": account}
        request = group._with_default_account(request)
        req = validate_model(EvaluationCreateRequest, request, what="Evaluation create request")
        entity = group._build(req)
    else:
        account = account or group._core.default_account
        if not account:
            raise errors.ValidationError(f"{what}: give the account that owns it", field="account")
        item = schemas[0].field("responses").type.value_type
        import pyarrow as pa

        output = DataSchema.make_output_schema(
            pa.schema([f for f in item if f.name != "_response_index_"])
        )
        service = {
            "id": ids.null_id(),
            "account": account,
            "name": "imported",
            "interface": {"endpoint": "imported", "outputSchema": output.model_dump(by_alias=True)},
        }
        entity = group._new(
            {
                "account": account,
                "dataset": ids.null_id(),
                "inferenceSession": {"inferenceService": service},
            }
        )
    rows = pairs.num_rows
    entity = entity.model_copy(
        update={
            "id": id or entity.id,
            "status": Status.Complete,
            "message": f"imported {plural(rows, 'row')} from {plural(len(files), 'file')}",
            "lastTransitionTime": utc_now(),
        }
    )
    doc = entity.to_wire()
    doc["annotations"] = [
        {"key": INTEGRITY_ANNOTATION, "value": json.dumps(integrity.as_dict(), sort_keys=True)}
    ]
    doc["creationTime"] = iso(utc_now())
    storage = group._core.storage
    try:
        for n, path in enumerate(files):
            storage.put_file(entity.id, f"data/part-import-{n:04d}.parquet", path)
        refs = (
            {k: list(v) for k, v in entity.query_refs().items() if v} if request is not None else {}
        )
        group._core.store.create(doc, refs=refs)
    except BaseException:
        storage.delete_entity(entity.id)
        raise
    return group.require(entity.id)
