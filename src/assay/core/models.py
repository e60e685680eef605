"""Models: the files of a system (weights, tokenizer, configuration), from which
InferenceServices are built.

Where a Model's files come from decides its workflow (:func:`prepare_model`):

- ``source.kind = HuggingFaceHub``: the files are fetched with
  ``huggingface_hub.snapshot_download`` (``HF_ENDPOINT`` is read when the fetch runs, so a
  mirror can be set at any time), stored as the Model's artifacts, and their paths, sizes and
  md5 digests recorded in ``artifact.volume.files``; a failed fetch ends in ``Error`` with
  ``reason = FetchFailed`` and a message naming the repository, the revision and the cause.
  The files lie flat in the Model's directory, as in the repository (``files_dir``), whatever
  artifact kind was declared (which is kept, e.g. ``HuggingFaceCache``). Private and gated
  repositories need a token in ``HF_TOKEN`` (read at every fetch too);
- ``artifact.kind = Volume`` (any other source): the Model waits for its upload
  (``WaitingForUpload``) like a Dataset or a Module: :meth:`Models.create_from_volume`, then
  :meth:`Models.upload_volume`;
- anything else (``Mock``): nothing to fetch, the Model is ``Ready`` at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay import errors
from assay.core.datasets import plural
from assay.core.groups import EntityGroup
from assay.core.modules import package_files
from assay.core.uploads import UploadGroup, file_md5, list_files
from assay.engine import WorkflowContext, WorkflowResult
from assay.schema.platform import File, Model
from assay.schema.requests import ModelCreateRequest
from assay.schema.status import Status

if TYPE_CHECKING:
    from assay.schema.platform import Entity, ModelSourceHuggingFaceHub
    from assay.storage import ArtifactStorage

__all__ = [
    "DEFAULT_HUB_ENDPOINT",
    "FETCH_FAILED",
    "Models",
    "hub_endpoint",
    "model_has_work",
    "prepare_model",
]

#: The reason of a Model whose files could not be fetched from their source.
FETCH_FAILED = "FetchFailed"
#: The Hugging Face Hub used when ``HF_ENDPOINT`` is not set.
DEFAULT_HUB_ENDPOINT = "https://huggingface.co"
#: Where a fetch downloads to, inside the Model's directory (removed once the files are stored).
_SCRATCH = ".assay/fetch"
_MAX_CAUSE = 600


def hub_endpoint() -> str:
    """The Hugging Face Hub to fetch from: ``HF_ENDPOINT`` as it is *now*.

    ``huggingface_hub`` reads ``HF_ENDPOINT`` once, when it is imported; Assay reads it at every
    fetch and passes it explicitly, so that setting it later (a mirror, a test's fake hub)
    takes effect."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_HUB_ENDPOINT).rstrip("/")


def _source_kind(body: dict[str, Any]) -> str | None:
    return (body.get("source") or {}).get("kind")


def _waits_for_upload(body: dict[str, Any]) -> bool:
    """A Model whose files are a Volume is uploaded, unless they are fetched from a hub."""
    artifact = body.get("artifact") or {}
    return artifact.get("kind") == "Volume" and _source_kind(body) != "HuggingFaceHub"


class Models(UploadGroup[Model]):
    """The Models: create, upload a directory of files, find where the files are."""

    kind = "Model"
    request_type = ModelCreateRequest

    # -- creating ----------------------------------------------------------------------------

    def _build(self, request: Any) -> Model:
        body = request.model_dump(by_alias=True, exclude_none=True, exclude={"schemaVersion"})
        if _source_kind(body) == "HuggingFaceHub" and request.source.huggingFaceHub is None:
            raise errors.ValidationError(
                "Model create request: source.kind is HuggingFaceHub, so source.huggingFaceHub "
                "must say what to fetch, e.g. {'repoID': 'openai-community/gpt2', 'revision': "
                "'main'}",
                field="source.huggingFaceHub",
            )
        if _waits_for_upload(body) and not (body["artifact"].get("volume") or {}).get("files"):
            raise errors.ValidationError(
                "Model create request: artifact.kind is Volume, so artifact.volume.files must "
                "declare the files to upload (models.create_from_volume(directory, ...) does it "
                "for a directory)",
                field="artifact.volume.files",
            )
        return self._new(body)

    def _new(
        self, body: dict[str, Any], *, status: str = Status.Created, reason: str | None = None
    ) -> Model:
        if _waits_for_upload(body):
            return super()._new(body, status=status, reason=reason)
        # fetched or mock: no upload to wait for (skip UploadGroup's WaitingForUpload)
        return EntityGroup._new(self, body, status=status, reason=reason)

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
        Hidden files and caches (``.git``, ``__pycache__``...) are left out, as for Modules.
        ``resources`` defaults to the storage the files take; ``account`` to the
        platform's."""
        what = f"Model {name!r}"
        root = list_files(Path(directory), what)
        paths = package_files(root)
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
        total = sum(sizes.values())
        request: dict[str, Any] = {
            "name": name,
            "artifact": {"kind": "Volume", "volume": {"files": files}},
            "source": {"kind": "Upload"},
            "resources": resources if resources is not None else {"storage": str(total)},
        }
        if account is not None:
            request["account"] = account
        return self.create(request)

    def upload_volume(self, model: Model | str, directory: str | Path) -> Model:
        """Upload the files of a Model made by :meth:`create_from_volume`; it becomes
        ``Ready`` once every file is stored with its declared digest."""
        entity = self.require(model if isinstance(model, str) else model.id)
        return self._upload_directory(entity, Path(directory))

    # -- UploadGroup's hooks: a Model declares its files in artifact.volume.files, with sizes

    declaration_field = "artifact.volume.files"

    def _declared(self, entity: Model) -> list[File]:
        volume = entity.artifact.volume
        return list(volume.files) if volume is not None else []

    def _declared_docs(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        return list(((doc.get("artifact") or {}).get("volume") or {}).get("files") or [])

    def _record(self, item: dict[str, Any], md5: str, size: int) -> None:
        item.update(digest={"md5": md5}, size=size)

    # -- reading -----------------------------------------------------------------------------

    def files_dir(self, id: str) -> Path:
        """The local directory that holds the files of a ``Ready`` Model (what runners load):
        its own where the storage is local, else a copy on this machine (an S3 bucket's files
        are downloaded, again only when changed). ConflictError while it is not ``Ready``;
        ValidationError for a Model without files."""
        entity = self.require(id)
        self._require_success(entity, "read the files of")
        if not self._declared(entity):
            raise errors.ValidationError(
                f"Model {id} has no files (artifact kind {entity.artifact.kind}); create it "
                "from a directory (models.create_from_volume) or a HuggingFaceHub source",
                entity=id,
            )
        first = self._declared(entity)[0].path
        location = self._core.storage.local_path(id, first)
        if location is None:
            paths = [f.path for f in self._declared(entity)]
            return self._core.storage.local_copy(id, paths)
        return Path(location).parents[first.count("/")]


# -- the workflow ----------------------------------------------------------------------------


def model_has_work(entity: Entity) -> bool:
    """A Model has files to fetch (a hub source) or to check (an uploaded volume); a Mock
    has none and is Ready at once."""
    model: Model = entity  # type: ignore[assignment]
    volume = model.artifact.volume
    return model.source.kind == "HuggingFaceHub" or bool(volume is not None and volume.files)


def prepare_model(ctx: WorkflowContext) -> WorkflowResult:
    """The Model workflow: fetch a Hugging Face Hub source; check uploaded files; nothing for
    a Mock."""
    entity: Model = ctx.entity  # type: ignore[assignment]
    if entity.source.kind == "HuggingFaceHub" and entity.source.huggingFaceHub is not None:
        return _fetch(ctx, entity, entity.source.huggingFaceHub)
    volume = entity.artifact.volume
    if volume is None or not volume.files:
        return WorkflowResult()
    for file in volume.files:
        if file.digest.md5:
            ctx.storage.verify(entity.id, file.path, file.digest.md5)
    return WorkflowResult(message=_describe_files(volume.files))


def _describe_files(files: list[File]) -> str:
    size = sum(f.size for f in files)
    return f"{plural(len(files), 'file')} ({plural(size, 'byte')})"


def _scratch_dir(storage: ArtifactStorage, id: str) -> Path:
    """A directory for the download: inside the Model's own directory where the storage is
    local (so storing the files is a local copy), else a temporary directory."""
    local = storage.local_path(id, _SCRATCH)
    if local is None:
        return Path(tempfile.mkdtemp(prefix=f"assay-fetch-{id}-"))
    local.mkdir(parents=True, exist_ok=True)
    return local


def _snapshot(hub: ModelSourceHuggingFaceHub, scratch: Path, endpoint: str) -> Path:
    """Download the repository's files into ``scratch/files`` (raises whatever
    huggingface_hub raises)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils.tqdm import tqdm

    class Quiet(tqdm):  # no progress bars on the platform's stderr
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]

    local = snapshot_download(
        hub.repoID,
        revision=hub.revision,
        allow_patterns=hub.allowPatterns,
        ignore_patterns=hub.ignorePatterns,
        local_dir=scratch / "files",
        cache_dir=scratch / "cache",  # refs and locks: nothing left in the user's HF cache
        endpoint=endpoint,
        tqdm_class=Quiet,
    )
    return Path(local)


def _fetch(ctx: WorkflowContext, entity: Model, hub: ModelSourceHuggingFaceHub) -> WorkflowResult:
    endpoint = hub_endpoint()
    what = f"Hugging Face Hub repository {hub.repoID!r} at revision {hub.revision!r}"

    def failed(cause: str) -> WorkflowResult:
        if len(cause) > _MAX_CAUSE:
            cause = cause[:_MAX_CAUSE] + "..."
        return WorkflowResult(
            status=Status.Error,
            reason=FETCH_FAILED,
            message=f"could not fetch the {what} from {endpoint}: {cause}",
        )

    storage = ctx.storage
    scratch = _scratch_dir(storage, entity.id)
    stored: list[dict[str, Any]] = []
    try:
        ctx.progress(f"fetching {hub.repoID}@{hub.revision} from {endpoint}", force=True)
        try:
            local = _snapshot(hub, scratch, endpoint)
        except ImportError as exc:
            return failed(
                f"{exc}; the huggingface_hub package is needed: pip install 'assay[huggingface]'"
            )
        except Exception as exc:  # huggingface_hub's errors span lines: make it one
            return failed(f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        paths = package_files(local)
        if not paths:
            patterns = f" (allowPatterns {hub.allowPatterns}, ignorePatterns {hub.ignorePatterns})"
            return failed(f"no files to store{patterns}; check the patterns")
        for i, path in enumerate(paths):
            ctx.check()
            ctx.progress(f"storing file {i + 1:,} / {len(paths):,} of {hub.repoID}")
            try:
                info = storage.put_file(entity.id, path, local / path)
            except errors.AssayError as exc:
                return failed(f"its file {path!r} cannot be stored: {exc}")
            md5 = info.md5 or storage.md5(entity.id, path)
            stored.append({"path": path, "size": info.size, "digest": {"md5": md5}})
        files = list(stored)

        def record(doc: dict[str, Any]) -> dict[str, Any] | None:
            if doc.get("status") != Status.Admitted:
                return None
            doc["artifact"] = {**doc["artifact"], "volume": {"files": files}}
            return doc

        ctx.store.update(entity.id, record)
        stored.clear()  # recorded: keep them
        described = _describe_files([File.model_validate(f) for f in files])
        return WorkflowResult(message=f"{described} fetched from {hub.repoID}@{hub.revision}")
    finally:
        for file in stored:  # a failure after some files were stored: remove them
            storage.delete(entity.id, file["path"])
        shutil.rmtree(scratch, ignore_errors=True)
        if storage.local_path(entity.id, _SCRATCH) is not None:
            with contextlib.suppress(OSError):  # the .assay left by the fetch, if empty
                scratch.parent.rmdir()
