"""``LocalPlatform``'s remote mode: entities fetched from an Assay server, and local
evaluations answered by a session that runs there.

``LocalPlatform(storage_root, remote_client=Client(...))`` gives every API group a
:class:`ClientSource` (``group.fetch(id)`` and ``evaluations.local_evaluation(...)`` use it).
See ``docs/design/client.md``, "Remote mode".

- ``fetch(id)``: the record as the server has it, every artifact the server lists (each
  downloaded through its signed URL and checked against the server's md5), the log of a
  measurement or safety case, and a safety case's scores and curves, stored through the core's
  import path (``EntityGroup._import_record``), which checks every digest again before the
  record is written. A file already here with the server's md5 is not downloaded again.
- ``local_evaluation(dataset=..., inferencesession=...)``: the instances of a local Dataset go
  to the server's session through its infer route, with a session token. The local platform
  sees that route as an ``http`` InferenceService (its *proxy*: the remote service's name and
  interface, the runner URL ``<endpoint>/inferencesessions/<id>/infer``, the token kept as the
  platform secret ``remote-session-<id>``), and runs an ordinary local Evaluation of it: the
  evaluation engine's concurrency, retries, output schema, parts and integrity check are the
  same as for any service, and the output is written once.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay import errors
from assay.schema.paths import validate_artifact_path
from assay.schema.status import Status, is_status_success

if TYPE_CHECKING:
    from assay.client import Client
    from assay.core.groups import EntityGroup
    from assay.local.platform import LocalPlatform
    from assay.schema.platform import Entity, InferenceService, InferenceSession

__all__ = [
    "REMOTE_SERVICE_LABEL",
    "REMOTE_SESSION_LABEL",
    "ClientSource",
    "proxy_secret_name",
]

#: Labels of the local proxy service and of the local Evaluation: the server's session and
#: service that answered.
REMOTE_SESSION_LABEL = "assay.io/remote-inferencesession"
REMOTE_SERVICE_LABEL = "assay.io/remote-inferenceservice"
#: Where an analysis's log lives among its artifacts (not listed by the server's downlinks).
_LOG_PATH = ".assay/logs.txt"


def proxy_secret_name(session_id: str) -> str:
    """The platform secret that holds the token for the server's session ``session_id``."""
    return f"remote-session-{session_id}"


class ClientSource:
    """The server behind ``client``, as a source of entities for ``platform``."""

    def __init__(self, platform: LocalPlatform, client: Client) -> None:
        self._platform = platform
        self._client = client

    # -- fetch ---------------------------------------------------------------------------

    def fetch(self, group: EntityGroup[Any], id: str) -> Entity:
        """Download entity ``id`` (of ``group``'s kind) with its artifacts and import it."""
        from assay.schema.platform import Resources

        kind = group.kind
        resource = Resources.for_kind(kind).value
        remote = getattr(self._client, resource)
        entity: Entity = remote.require(id)
        if not is_status_success(entity.status):
            state = entity.status + (f" ({entity.reason})" if entity.reason else "")
            hint = (
                f"wait for it (client.{resource}.wait(id)), then fetch it"
                if entity.status in (Status.Created, Status.Admitted)
                else "only entities that are Ready or Complete can be fetched"
            )
            raise errors.ConflictError(
                f"cannot fetch {kind} {id} from {self._client.endpoint}: it is {state}; {hint}"
            )
        artifacts = self._client._artifacts  # the Client's signed-URL downloads (md5 checked)
        links = artifacts.links(resource, kind, id)
        storage = self._platform.core.storage
        scratch = self._platform.storage_root / ".assay"
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="fetch-", dir=scratch) as tmp:
            root = Path(tmp)
            files: dict[str, tuple[Path, str | None]] = {}
            for link in links:
                validate_artifact_path(link.path, entity=f"{kind} {id} on the server")
                here = storage.local_path(id, link.path)
                if here is not None and link.md5 and here.is_file() and _md5(here) == link.md5:
                    files[link.path] = (here, link.md5)  # already here: not downloaded again
                    continue
                target = root.joinpath("files", *link.path.split("/"))
                artifacts.fetch(link, target, f"{kind} {id}")
                files[link.path] = (target, link.md5)
            records: list[Any] = []
            if kind in ("Measurement", "SafetyCase"):
                log = remote.logs(id)
                if log:
                    target = root / "logs.txt"
                    target.write_text(log, encoding="utf-8")
                    files[_LOG_PATH] = (target, None)
            if kind == "SafetyCase":
                records = [*remote.scores(id), *remote.curves(id)]
            imported: Entity = group._import_record(entity.to_wire(), files, records=records)
            return imported

    # -- local evaluations ---------------------------------------------------------------

    def local_evaluation(self, group: Any, *, dataset: str, inferencesession: str) -> str:
        """Evaluate the local Dataset ``dataset`` with the server's running session
        ``inferencesession``; returns the local Evaluation's id once it is done."""
        platform, client = self._platform, self._client
        what = "local_evaluation"
        data = platform.datasets.get(dataset)
        if data is None:
            raise errors.NotFoundError(
                f"{what}: dataset {dataset!r} is not a Dataset of this platform (its instances "
                f"are read here and sent to the server's session); fetch it first with "
                f"datasets.fetch({dataset!r}), or create it here",
                kind="Dataset",
                id=dataset,
            )
        session: InferenceSession = client.inferencesessions.require(inferencesession)
        if session.status != Status.Ready:
            state = session.status + (f" ({session.reason})" if session.reason else "")
            raise errors.ConflictError(
                f"{what}: InferenceSession {inferencesession} on {client.endpoint} is {state}; "
                "it must be Ready (running): wait for it with client.inferencesessions.wait(id), "
                "or start a new one"
            )
        secret = proxy_secret_name(inferencesession)
        platform.secrets.set(secret, client.inferencesessions.token(inferencesession))
        service = self._proxy_service(session, secret, data.account)
        evaluation = group.create(
            {
                "account": data.account,
                "dataset": dataset,
                "inferenceSession": {"inferenceService": service.id},
            }
        )
        self._label(evaluation.id, session)
        return str(group.wait(evaluation.id).id)

    def _proxy_service(
        self, session: InferenceSession, secret: str, account: str
    ) -> InferenceService:
        """The local ``http`` service that stands for the server's session (made once)."""
        platform = self._platform
        url = f"{self._client.endpoint}/inferencesessions/{session.id}/infer"
        configuration = {"url": url, "credential": {"secret": secret}}
        for service in platform.inferenceservices.query(
            account=account, labels={REMOTE_SESSION_LABEL: session.id}
        ):
            if service.runner is not None and service.runner.configuration == configuration:
                return service
        remote = session.inferenceService
        service = platform.inferenceservices.create(
            {
                "account": account,
                "name": remote.name,
                "runner": {"kind": "http", "configuration": configuration},
                "interface": remote.interface.to_wire(),
            }
        )
        self._label(service.id, session)
        return service

    def _label(self, id: str, session: InferenceSession) -> None:
        """Mark a local entity with the server's session and service (reserved labels, which
        only the platform sets)."""
        labels = {
            REMOTE_SESSION_LABEL: session.id,
            REMOTE_SERVICE_LABEL: session.inferenceService.id,
        }

        def mutate(doc: dict[str, Any]) -> dict[str, Any]:
            doc["labels"] = {**(doc.get("labels") or {}), **labels}
            return doc

        self._platform.core.store.update(id, mutate)


def _md5(path: Path) -> str:
    from assay.core.uploads import file_md5

    return file_md5(path)
