"""The kinds whose files are uploaded — Datasets, Modules, Models — on the server.

As with ``LocalPlatform``, an entity is created first, declaring each file with its md5
(``create_arrow_dataset``, ``create_package``, ``create_from_volume``); then ``upload_*`` PUTs
every declared file to its signed URL and finalizes, and the server checks every digest. The
``upload_*`` methods wait for the server's check (ingest) and return the entity ``Ready`` —
or ``Error``, with the reason and message — as ``LocalPlatform`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from assay import errors
from assay.client._artifacts import UploadSource, file_md5
from assay.client._groups import RemoteGroup

if TYPE_CHECKING:
    import pyarrow.dataset

    from assay.schema.platform import Dataset, Entity, Model, Module

__all__ = ["Datasets", "Models", "Modules", "RemoteUploadGroup"]

U = TypeVar("U", bound="Entity")


def _directory(root: str | Path, what: str) -> Path:
    path = Path(root)
    if not path.is_dir():
        raise errors.ValidationError(
            f"{what}: {str(path)!r} is not a directory (give the directory that holds the files)",
            field="directory",
            value=str(path),
        )
    return path


class RemoteUploadGroup(RemoteGroup[U]):
    """A group whose entities declare files that are uploaded after creation."""

    def _declared(self, entity: Any) -> list[Any]:
        """The declared files (each with ``path`` and ``digest``)."""
        return list(entity.artifacts)

    def put_artifact(self, id: str, path: str, data: UploadSource) -> str:
        """Upload one declared artifact (bytes, a file path, a binary file or byte chunks) to
        its signed URL and return its md5. A digest declared at creation must match (the
        server refuses the file otherwise)."""
        return self._artifacts.upload(self.resource, self.kind, id, path, data)

    def finalize(self, id: str) -> U:
        """Ask the server to check that every declared artifact is stored with its declared
        digest and to start ingest. Returns the entity at once (``wait(id)`` for ingest)."""
        self._call("POST", id, "finalize")
        return self.require(id)

    def _upload_directory(self, entity: Any, directory: Path) -> U:
        """Put every declared artifact from ``directory``, finalize, and wait for ingest."""
        directory = _directory(directory, f"{self.kind} {entity.id} upload")
        for artifact in self._declared(entity):
            source = directory.joinpath(*artifact.path.split("/"))
            if not source.is_file():
                raise errors.ValidationError(
                    f"{self.kind} {entity.id}: {str(source)!r} is missing; upload from the "
                    "directory the entity was created from",
                    field="directory",
                    entity=entity.id,
                )
        for artifact in self._declared(entity):
            self.put_artifact(entity.id, artifact.path, directory / artifact.path)
        self.finalize(entity.id)
        return self.wait(entity.id)

    def _entity(self, entity: Any) -> Any:
        return self.require(entity if isinstance(entity, str) else entity.id)


class Datasets(RemoteUploadGroup["Dataset"]):
    kind = "Dataset"
    resource = "datasets"
    request_name = "DatasetCreateRequest"

    def create_arrow_dataset(
        self, dataset_directory: str | Path, *, account: str | None = None, name: str
    ) -> Dataset:
        """Create a Dataset describing the Parquet files under ``dataset_directory``; then call
        :meth:`upload_arrow_dataset`. Every file is checked (readable, one schema, an integer
        ``_index_`` column) and its md5 declared before anything is sent. ``account``
        defaults to the token's."""
        from assay.core.datasets import arrow_dataset_request

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
        ``client.pipelines``) as a ``Ready`` Dataset of its inputs and a ``Complete``
        Evaluation of its outputs, made on the server. Returns both."""
        from assay.core.datasets import pipeline_traffic

        return pipeline_traffic(pipeline, start, end, name=name, valid=valid)

    def upload_arrow_dataset(
        self, dataset: Dataset | str, dataset_directory: str | Path
    ) -> Dataset:
        """Upload the files of a Dataset made by :meth:`create_arrow_dataset`, finalize, and
        wait for the server's ingest. Returns the Dataset (``Ready``, or ``Error`` with
        ``reason = IngestFailed``)."""
        return self._upload_directory(self._entity(dataset), Path(dataset_directory))

    def data_paths(self, entity: Dataset) -> list[str]:
        """The artifact paths of the data set's Parquet files."""
        return [a.path for a in entity.artifacts]

    def open(self, id: str) -> pyarrow.dataset.Dataset:
        """The data set's data as a ``pyarrow.dataset.Dataset``: its files are downloaded to
        the client's cache directory (once; md5 checked) and read from there."""
        entity = self.require(id)
        self._require_success(entity, "open")
        return open_cached(self, entity, set(self.data_paths(entity)))


def open_cached(group: RemoteGroup[Any], entity: Any, paths: set[str] | None) -> Any:
    """The entity's Parquet data (``paths``, or every ``.parquet`` artifact) from the cache."""
    import pyarrow.dataset as ds

    files = group._artifacts.cached(
        group.resource,
        group.kind,
        entity.id,
        wanted=lambda link: (
            link.path in paths if paths is not None else link.path.endswith(".parquet")
        ),
    )
    if not files:
        raise errors.NotFoundError(
            f"{entity.kind} {entity.id} has no data files", kind=entity.kind, id=entity.id
        )
    schema = entity.schema_.arrow_schema() if getattr(entity, "schema_", None) else None
    return ds.dataset([str(f) for f in files], format="parquet", schema=schema)


def _package_files(
    root: Path, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None
) -> list[str]:
    """The files a package of ``root`` holds: the same rules as ``LocalPlatform``'s."""
    from assay.core.modules import package_files

    return package_files(root, include=include, exclude=exclude)


class Modules(RemoteUploadGroup["Module"]):
    kind = "Module"
    resource = "modules"
    request_name = "ModuleCreateRequest"

    def create_package(
        self,
        package_directory: str | Path,
        *,
        account: str | None = None,
        name: str,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
    ) -> Module:
        """Create a Module from the files under ``package_directory``; then call
        :meth:`upload_package`. Hidden files, ``__pycache__`` and bytecode are left out unless
        ``include`` (glob patterns; a pattern without ``/`` matches any path segment) names
        what to take; ``exclude`` patterns drop more. ``account`` defaults to the token's."""
        from assay.core.modules import package_request

        return self.create(
            package_request(
                package_directory, account=account, name=name, include=include, exclude=exclude
            )
        )

    def upload_package(self, module: Module | str, package_directory: str | Path) -> Module:
        """Upload the files of a Module made by :meth:`create_package`, finalize, and wait
        until the server has checked them; it becomes ``Ready``."""
        return self._upload_directory(self._entity(module), Path(package_directory))


class Models(RemoteUploadGroup["Model"]):
    kind = "Model"
    resource = "models"
    request_name = "ModelCreateRequest"

    def _declared(self, entity: Any) -> list[Any]:
        volume = entity.artifact.volume
        return list(volume.files) if volume is not None else []

    def create_from_volume(
        self,
        directory: str | Path,
        *,
        account: str | None = None,
        name: str,
        resources: dict[str, Any] | None = None,
    ) -> Model:
        """Create a Model from the files under ``directory`` (e.g. what ``save_pretrained``
        wrote), declaring each file's path, size and md5; then call :meth:`upload_volume`.
        Hidden files and caches are left out, as for Modules. ``resources`` defaults to the
        storage the files take; ``account`` to the token's."""
        what = f"Model {name!r}"
        root = _directory(directory, what)
        paths = _package_files(root)
        if not paths:
            raise errors.ValidationError(
                f"{what}: no files under {str(root)!r} (hidden files and caches are left out); "
                "give the directory the model was saved to",
                field="directory",
                value=str(root),
            )
        sizes = {p: (root / p).stat().st_size for p in paths}
        files = [
            {"path": p, "size": sizes[p], "digest": {"md5": file_md5(root / p)}} for p in paths
        ]
        request: dict[str, Any] = {
            "name": name,
            "artifact": {"kind": "Volume", "volume": {"files": files}},
            "source": {"kind": "Upload"},
            "resources": resources
            if resources is not None
            else {"storage": str(sum(sizes.values()))},
        }
        if account is not None:
            request["account"] = account
        return self.create(request)

    def upload_volume(self, model: Model | str, directory: str | Path) -> Model:
        """Upload the files of a Model made by :meth:`create_from_volume`, finalize, and wait
        until the server has checked them; it becomes ``Ready``."""
        return self._upload_directory(self._entity(model), Path(directory))

    def files_dir(self, id: str) -> Path:
        """A local directory with the files of a ``Ready`` Model: downloaded to the client's
        cache directory (once; md5 checked)."""
        entity = self.require(id)
        self._require_success(entity, "read the files of")
        if not self._declared(entity):
            raise errors.ValidationError(
                f"Model {id} has no files (artifact kind {entity.artifact.kind}); create it "
                "from a directory (models.create_from_volume) or a HuggingFaceHub source",
                entity=id,
            )
        self._artifacts.cached(self.resource, self.kind, id)
        return self._artifacts.entity_cache(id)
