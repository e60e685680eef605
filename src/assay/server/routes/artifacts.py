"""Artifact routes: signed upload URLs, finalize, downlinks, and the storage endpoints that
signed URLs point at.

=======  ==========================================  ========  ==============================
Method   Path                                        Function  Answer
=======  ==========================================  ========  ==============================
GET      /R/{id}/upload/{path}                       upload    ``{url, method: PUT, headers}``
POST     /R/{id}/finalize                            upload    its status (digests checked)
GET      /R/{id}/downlinks                           download  ``[{artifact, signedURL}]``
GET      /R/{id}/logs                                download  ``{artifact, signedURL}`` (log)
PUT      /storage/{resource}/{id}/{path}?signature   (URL)     ``{path, size, digest}``
GET      /storage/{resource}/{id}/{path}?signature   (URL)     the bytes, with Content-Length
=======  ==========================================  ========  ==============================

Upload routes exist for the kinds whose files are uploaded (datasets, models, modules).
An uploaded artifact is streamed into storage, never held in memory; its md5 is computed on
the way and checked against the digest declared at creation (a mismatch removes it: 422).
"""

import json
from collections.abc import Iterator
from typing import Annotated, Any

import anyio.from_thread
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from assay import errors
from assay.schema.paths import validate_artifact_path
from assay.schema.platform import Artifact, ArtifactURL, Digest, StatusInfo, StorageSignedURL
from assay.schema.status import Reason, Status, is_status_success
from assay.server.access import entity_for
from assay.server.resources import RESOURCE_KINDS, ResourceKind, resource_kind
from assay.server.routes.entities import ENTITY_ID, list_of, status_of
from assay.server.signed_urls import STORAGE_PREFIX
from assay.server.state import Caller, State, base_url, json_response, server_state
from assay.storage import CHUNK_SIZE

__all__ = ["add_artifact_routes", "add_storage_routes", "artifact_links"]

ARTIFACT_PATH = Annotated[
    str, Path(description="The artifact's path inside the entity, '/'-separated.")
]
#: The analysis log of measurements and safety cases (what the Method printed).
LOG_PATH = ".assay/logs.txt"


def declared_files(entity: Any) -> list[Any]:
    """The files an entity declares (``artifacts``, or a Model's ``artifact.volume.files``)."""
    if hasattr(entity, "artifacts"):
        return list(entity.artifacts)
    volume = getattr(getattr(entity, "artifact", None), "volume", None)
    return list(volume.files) if volume is not None else []


def _visible(path: str) -> bool:
    return not any(part.startswith(".") for part in path.split("/"))


def artifact_links(
    state: Any, base: str, rk: ResourceKind, entity: Any, *, compute_digests: bool = True
) -> list[ArtifactURL]:
    """Signed GET URLs (on the server at ``base``) of the artifacts of ``entity``, a
    ``Ready``/``Complete`` or ``Failed`` one (409 otherwise), with their md5 digests (those
    not recorded computed now, unless not ``compute_digests``: the web UI's entity page
    leaves them out); hidden ``.assay/`` files are left out. The caller has checked that the
    caller may ``download``."""
    kind, id = rk.kind, entity.id
    # A Failed workflow has ended too: it lists what it left (e.g. a failed notebook).
    if not is_status_success(entity.status) and entity.status != Status.Failed:
        raise errors.ConflictError(
            f"{kind} {id} is {entity.status}; its artifacts can be downloaded once it is "
            "Ready or Complete, or Failed (what it left), so wait for it"
        )
    storage = state.core.storage
    known = {
        f.path: (getattr(f, "kind", None), f.digest.md5 if f.digest else None)
        for f in declared_files(entity)
    }
    links = []
    for info in storage.list(id):
        if not _visible(info.path):
            continue
        artifact_kind, md5 = known.get(info.path, (None, None))
        artifact = Artifact(
            kind=artifact_kind,
            path=info.path,
            digest=Digest(md5=md5 or (storage.md5(id, info.path) if compute_digests else None)),
        )
        signed = state.urls.url(base, "GET", rk.resource, id, info.path)
        links.append(ArtifactURL(artifact=artifact, signedURL=signed))
    return links


def add_artifact_routes(router: APIRouter, rk: ResourceKind) -> None:
    """Add the artifact routes of ``rk`` to ``router``."""
    R, kind = rk.resource, rk.kind
    tags: list[Any] = [R]

    def checked(state: Any, principal: Any, id: str, function: str) -> Any:
        return entity_for(principal, rk.group(state.core), R, function, id)

    if rk.uploads:

        def upload(
            id: ENTITY_ID, path: ARTIFACT_PATH, request: Request, principal: Caller, state: State
        ) -> Response:
            entity = checked(state, principal, id, "upload")
            validate_artifact_path(path, entity=f"{kind} {id}")
            if entity.status != Status.Created or entity.reason != Reason.WaitingForUpload:
                raise errors.ConflictError(
                    f"{kind} {id} is not waiting for an upload (it is {entity.status}"
                    f"{', ' + entity.reason if entity.reason else ''}); its files cannot change "
                    "once finalized: create a new one instead"
                )
            declared = [f.path for f in declared_files(entity)]
            if path not in declared:
                listed = ", ".join(repr(p) for p in declared[:10]) or "none"
                raise errors.ValidationError(
                    f"{kind} {id}: {path!r} is not one of its files ({listed}); upload only "
                    "the files declared when it was created",
                    field="path",
                    value=path,
                    entity=id,
                )
            md5 = next(
                (
                    f.digest.md5 if f.digest else None
                    for f in declared_files(entity)
                    if f.path == path
                ),
                None,
            )
            signed = state.urls.url(base_url(request, state), "PUT", R, id, path, md5=md5)
            return json_response(signed)

        router.add_api_route(
            f"/{R}/{{id}}/upload/{{path:path}}",
            upload,
            methods=["GET"],
            operation_id=f"{R}_upload",
            summary=f"{kind} upload URL",
            description=(
                "A signed URL to PUT one declared file to (raw bytes, with Content-Length; no "
                "Authorization header). Then POST finalize."
            ),
            tags=tags,
            responses={200: {"model": StorageSignedURL, "description": "The signed PUT URL."}},
        )

        def finalize(id: ENTITY_ID, principal: Caller, state: State) -> Response:
            checked(state, principal, id, "upload")
            return json_response(status_of(rk.group(state.core).finalize(id)))

        router.add_api_route(
            f"/{R}/{{id}}/finalize",
            finalize,
            methods=["POST"],
            operation_id=f"{R}_finalize",
            summary=f"{kind} finalize",
            description=(
                "Check that every declared file is uploaded with its declared md5, and start "
                "ingest. A failed check leaves the entity waiting for its upload."
            ),
            tags=tags,
            responses={200: {"model": StatusInfo, "description": "Its status."}},
        )

    def downlinks(id: ENTITY_ID, request: Request, principal: Caller, state: State) -> Response:
        entity = checked(state, principal, id, "download")
        return json_response(artifact_links(state, base_url(request, state), rk, entity))

    router.add_api_route(
        f"/{R}/{{id}}/downlinks",
        downlinks,
        methods=["GET"],
        operation_id=f"{R}_downlinks",
        summary=f"{kind} downlinks",
        description="Signed GET URLs of the entity's artifacts, with their md5 digests (of a "
        "Ready or Complete entity, or of a Failed one: what its workflow left, e.g. the partly "
        "executed notebook of a failed safety case).",
        tags=tags,
        responses={200: {"model": list_of(ArtifactURL), "description": "The artifacts."}},
    )

    def logs(id: ENTITY_ID, request: Request, principal: Caller, state: State) -> Response:
        checked(state, principal, id, "download")
        if not state.core.storage.exists(id, LOG_PATH):
            raise errors.NotFoundError(
                f"{kind} {id} has no log file (only measurements and safety cases write one, "
                "when their Method runs)",
                kind=kind,
                id=id,
            )
        artifact = Artifact(kind="log", path=LOG_PATH, digest=Digest())
        signed = state.urls.url(base_url(request, state), "GET", R, id, LOG_PATH)
        return json_response(ArtifactURL(artifact=artifact, signedURL=signed))

    router.add_api_route(
        f"/{R}/{{id}}/logs",
        logs,
        methods=["GET"],
        operation_id=f"{R}_logs",
        summary=f"{kind} log file URL",
        description="A signed URL of the entity's log file (what its Method printed).",
        tags=tags,
        responses={200: {"model": ArtifactURL, "description": "The log file."}},
    )


def _upload_kinds() -> str:
    return ", ".join(rk.resource for rk in RESOURCE_KINDS if rk.uploads)


def _storage_kind(resource: str, *, upload: bool) -> ResourceKind:
    try:
        rk = resource_kind(resource)
    except KeyError:
        raise errors.NotFoundError(f"no resource {resource!r}", kind="Resource") from None
    if upload and not rk.uploads:
        raise errors.ValidationError(
            f"{resource} have no uploaded files (uploads: {_upload_kinds()})", field="resource"
        )
    return rk


def _pull(request: Request, expected: int, received: list[int]) -> Iterator[bytes]:
    """The request body's chunks, read from a worker thread (through the event loop)."""
    stream = request.stream()

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    size = 0
    while (chunk := anyio.from_thread.run(next_chunk)) is not None:
        size += len(chunk)
        if size > expected:
            raise errors.ValidationError(
                f"the upload is longer than its Content-Length ({expected:,} bytes)",
                field="Content-Length",
            )
        if chunk:
            yield chunk
    received.append(size)
    if size != expected:
        raise errors.ValidationError(
            f"the upload ended after {size:,} of {expected:,} bytes; upload the file again",
            field="Content-Length",
        )


SIGNATURE = Annotated[str | None, Query(description="The signature from the signed URL.")]


def add_storage_routes(router: APIRouter) -> None:
    """Add the endpoints signed URLs point at (no bearer token: the signature is the
    permission)."""

    async def put_artifact(
        resource: str, id: str, path: str, request: Request, signature: SIGNATURE = None
    ) -> Response:
        state = server_state(request)
        state.urls.verify("PUT", resource, id, path, signature)
        rk = _storage_kind(resource, upload=True)
        length = request.headers.get("content-length")
        if length is None:
            raise HTTPException(
                411, "the upload needs a Content-Length header (send the file's size in bytes)"
            )
        expected = int(length)  # a number: BodyLimit refuses anything else
        received: list[int] = []
        try:
            md5: str = await run_in_threadpool(
                rk.group(state.core).put_artifact, id, path, _pull(request, expected, received)
            )
        except ClientDisconnect:
            raise errors.ValidationError(
                "the client went away before the upload finished; upload the file again"
            ) from None
        reply = {
            "path": path,
            "size": received[0] if received else expected,
            "digest": {"md5": md5},
        }
        return Response(
            json.dumps(reply), media_type="application/json", headers={"ETag": f'"{md5}"'}
        )

    router.add_api_route(
        f"{STORAGE_PREFIX}/{{resource}}/{{id}}/{{path:path}}",
        put_artifact,
        methods=["PUT"],
        operation_id="storage_put",
        summary="artifact upload (signed URL)",
        description="Store the raw request body as the artifact. Needs Content-Length.",
        tags=["storage"],
    )

    def get_artifact(
        resource: str, id: str, path: str, request: Request, signature: SIGNATURE = None
    ) -> Response:
        state = server_state(request)
        state.urls.verify("GET", resource, id, path, signature)
        _storage_kind(resource, upload=False)
        storage = state.core.storage
        if not storage.exists(id, path):
            raise storage.missing(id, path)
        headers = {
            "Content-Disposition": "attachment",
            "X-Content-Type-Options": "nosniff",
        }
        local = storage.local_path(id, path)
        if local is not None:
            return FileResponse(local, media_type="application/octet-stream", headers=headers)
        size = next((i.size for i in storage.list(id, path) if i.path == path), None)
        if size is not None:
            headers["Content-Length"] = str(size)
        handle = storage.open(id, path)

        def chunks() -> Iterator[bytes]:
            with handle:
                while block := handle.read(CHUNK_SIZE):
                    yield block

        return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)

    router.add_api_route(
        f"{STORAGE_PREFIX}/{{resource}}/{{id}}/{{path:path}}",
        get_artifact,
        methods=["GET"],
        operation_id="storage_get",
        summary="artifact download (signed URL)",
        tags=["storage"],
        response_class=Response,
    )
