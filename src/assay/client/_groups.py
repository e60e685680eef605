"""The API groups of :class:`~assay.client.Client`: one per entity kind, all with the shape of
``LocalPlatform``'s (:mod:`assay.core.groups`), speaking the REST API.

Every group offers ``get`` (None for an unknown id), ``require`` (the same, but
:class:`~assay.errors.NotFoundError` for an unknown id), ``create``, ``delete``,
``query(**filters)``, ``label(id, {...})``,
``documentation(id)``, ``edit_documentation(id, ...)``, ``wait(id, timeout=None)`` and
``download(id, dest)``; those of jobs add ``terminate(id)`` (:class:`TerminableGroup`);
kind-specific operations live in subclasses in their own modules.
Requests are validated here first, so a bad request fails with the same message as it does
locally, before anything is sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar
from urllib.parse import quote

from assay import errors

if TYPE_CHECKING:
    import os
    from datetime import datetime

    import pydantic

    from assay.client._client import Client
    from assay.engine.logs import LogLine
    from assay.schema.platform import (
        Documentation,
        Entity,
        Family,
        FamilyMemberBase,
        InferenceService,
        Method,  # noqa: F401  (the groups' type arguments, in quotes)
        Report,
    )
    from assay.schema.requests import FamilyMembersEditRequest, LabelsEditRequest

__all__ = [
    "LOCAL_ONLY",
    "Families",
    "InferenceServices",
    "Methods",
    "RemoteGroup",
    "Reports",
    "TerminableGroup",
    "WorkflowLogs",
    "parse_answer",
    "query_params",
]

E = TypeVar("E", bound="Entity")
M = TypeVar("M", bound="pydantic.BaseModel")

#: ``LocalPlatform`` group methods that the REST API does not offer, and what to do instead.
LOCAL_ONLY: dict[str, str] = {
    "purge": "the server keeps deleted entities; delete(id) marks one Deleted",
    "import_data": "the server has no route to import outputs made elsewhere; import them "
    "with a LocalPlatform",
    "authorize": "the server checks session tokens on every inference call",
    "create_minted": "the server makes a session's token with the caller's token; a Client "
    "calls create(request)",
    "token_minted": "the server makes a token with the caller's token; a Client calls "
    "token(id, expires)",
    "fetch": "a Client's entities are on the server already; "
    "LocalPlatform(storage_root, remote_client=client).<group>.fetch(id) copies one into a "
    "local platform",
}

#: How often ``wait`` polls at first, and at most.
_POLL_FIRST, _POLL_MAX = 0.05, 1.0


def _scalar(key: str, value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise errors.ValidationError(
            f"query filter {key}={value!r}: give a string (or a list of strings for 'any of')",
            field=key,
            value=value,
        )
    return str(value)


def query_params(filters: Mapping[str, Any]) -> list[tuple[str, str]] | None:
    """Query parameters for ``filters``: a list value is the parameter given once per value
    ("any of"), ``labels`` and ``query`` dicts are sent as JSON, None is no filter. None
    when a filter is an empty list (nothing can match)."""
    params: list[tuple[str, str]] = []
    for key, value in filters.items():
        if value is None:
            continue
        if key in ("labels", "query") and isinstance(value, Mapping):
            params.append((key, json.dumps(dict(value), sort_keys=True)))
        elif isinstance(value, list | tuple | set | frozenset):
            if not value:
                return None
            params.extend((key, _scalar(key, v)) for v in value)
        else:
            params.append((key, _scalar(key, value)))
    return params


class RemoteGroup(Generic[E]):
    """Operations on the entities of one kind, on the server."""

    kind: ClassVar[str]
    #: The path segment of the kind's routes (``datasets``).
    resource: ClassVar[str]
    #: The name of the kind's create request in :mod:`assay.schema.requests` (None: the
    #: platform makes these entities).
    request_name: ClassVar[str | None] = None

    def __init__(self, client: Client) -> None:
        self._client = client
        self._transport = client._transport
        self._artifacts = client._artifacts

    @property
    def entity_type(self) -> type[E]:
        """The entity class of this kind."""
        from assay.schema.platform import entity_class

        return entity_class(self.kind)  # type: ignore[return-value]

    @property
    def request_type(self) -> type[Any] | None:
        """The create request class of this kind."""
        if self.request_name is None:
            return None
        from assay.schema import requests

        cls: type[Any] = getattr(requests, self.request_name)
        return cls

    def _path(self, id: str, *rest: str) -> str:
        return "/".join([f"/{self.resource}", quote(id, safe=""), *rest])

    def _call(self, method: str, id: str, *rest: str, **kwargs: Any) -> Any:
        """The JSON answer of a call about entity ``id``."""
        return self._transport.json(method, self._path(id, *rest), kind=self.kind, id=id, **kwargs)

    def _parse(self, data: Any) -> E:
        return parse_answer(self.entity_type, data, self.kind)

    # -- reading -------------------------------------------------------------------------

    def get(self, id: str) -> E | None:
        """The entity with this id; None if there is none, or the token may not see it (the
        server answers 404), as the reference platform's ``get``. :meth:`require` raises
        instead."""
        try:
            return self.require(id)
        except errors.NotFoundError:
            return None

    def require(self, id: str) -> E:
        """The entity with this id; :class:`assay.errors.NotFoundError` if there is none (or
        the token may not see it)."""
        return self._parse(self._call("GET", id))

    def query(self, **filters: Any) -> list[E]:
        """Entities of this kind matching every filter that the token may see. String
        filters match exactly; a list means "any of". ``labels`` is a dict (or its JSON) of
        key → value. ``order`` is ``ascending`` (default) or ``descending`` by creation
        time; page with ``limit`` and ``after`` (the id of the last entity of a page)."""
        params = query_params(filters)
        if params is None:
            return []
        data = self._transport.json("GET", f"/{self.resource}", params=params, kind=self.kind)
        return [self._parse(item) for item in data]

    def documentation(self, id: str) -> Documentation:
        """The entity's documentation (title, summary, full page)."""
        from assay.schema.platform import Documentation

        return parse_answer(Documentation, self._call("GET", id, "documentation"), "Documentation")

    def download(self, id: str, dest: str | os.PathLike[str]) -> list[Path]:
        """Download every artifact of the entity (it must be ``Ready`` or ``Complete``, or
        ``Failed``: what its workflow left, e.g. a failed notebook) into the directory
        ``dest``, each at its artifact path. Each file is checked against the md5 the
        server declares and moved into place only then. Returns the files."""
        return self._artifacts.download(self.resource, self.kind, id, Path(dest))

    # -- creating ------------------------------------------------------------------------

    def create(self, request: Any) -> E:
        """Create an entity from its create request (a request object or a dict). A dict may
        leave ``account`` out: the entity is then the token's account's (``Client.account``).
        The server answers at once: workflows run there (``wait(id)`` for them)."""
        return self._parse(self._post_create(request))

    def _with_default_account(self, request: Any) -> Any:
        """``request`` with the token's account where it is a dict naming none."""
        from assay.schema._request_base import lacks_account

        if lacks_account(request):
            account = self._client._default_account(f"{self.kind} create request")
            return {**request, "account": account}
        return request

    def _post_create(self, request: Any) -> Any:
        """Validate a create request here (the same refusals as ``LocalPlatform``), send it,
        and return the server's answer. POST is not retried once the server may have acted
        on it (see :class:`~assay.client.RetryMode`)."""
        from assay.schema.base import validate_model

        if self.request_type is None:
            raise errors.ValidationError(
                f"{self.kind} entities are made by the platform and cannot be created directly"
            )
        request = self._with_default_account(request)
        req = validate_model(self.request_type, request, what=f"{self.kind} create request")
        body = req.model_dump(mode="json")
        return self._transport.json("POST", f"/{self.resource}", json=body, kind=self.kind)

    # -- changing ------------------------------------------------------------------------

    def label(self, id: str, labels: Mapping[str, str | None] | LabelsEditRequest) -> E:
        """Merge ``labels`` into the entity's labels; a value of None removes the key."""
        from assay.schema.base import validate_model
        from assay.schema.requests import LabelsEditRequest

        if isinstance(labels, LabelsEditRequest):
            req = labels
        else:
            req = validate_model(
                LabelsEditRequest, {"labels": dict(labels)}, what=f"{self.kind} {id} labels"
            )
        return self._parse(self._call("PATCH", id, "labels", json=req.model_dump(mode="json")))

    def edit_documentation(self, id: str, edit: Any = None, **fields: Any) -> Documentation:
        """Change the documentation: fields given are set, fields given as None removed,
        others kept. Pass a ``DocumentationEditRequest``, a dict, or keywords."""
        from assay.schema.base import validate_model
        from assay.schema.platform import Documentation
        from assay.schema.requests import DocumentationEditRequest

        if edit is None:
            edit = fields
        elif fields:
            raise errors.ValidationError(
                f"{self.kind} {id} documentation: pass a request or keywords, not both"
            )
        req = validate_model(DocumentationEditRequest, edit, what=f"{self.kind} {id} documentation")
        body = req.model_dump(mode="json", exclude={"schemaVersion"})
        answer = self._call("PATCH", id, "documentation", json=body)
        return parse_answer(Documentation, answer, "Documentation")

    def delete(self, id: str) -> None:
        """Mark the entity ``Deleted`` (the server keeps its record and data)."""
        self._call("PUT", id, "delete")

    # -- workflows -----------------------------------------------------------------------

    def wait(self, id: str, timeout: float | None = None) -> E:
        """Block until the entity's status is terminal and return it (successful or not:
        check ``status``, ``reason`` and ``message``). Polls the server, more slowly as time
        goes on (at most every second); :class:`~assay.errors.WaitTimeoutError` after
        ``timeout`` seconds."""
        from assay.schema.status import is_status_terminal

        deadline = None if timeout is None else time.monotonic() + timeout
        delay = _POLL_FIRST
        while True:
            entity = self.require(id)
            if is_status_terminal(entity.status):
                return entity
            if deadline is not None and time.monotonic() >= deadline:
                raise errors.WaitTimeoutError(
                    f"{self.kind} {id} is still {entity.status}"
                    f"{' (' + entity.reason + ')' if entity.reason else ''} after {timeout} s"
                    f"{': ' + entity.message if entity.message else ''}; wait longer or check "
                    "its dependencies"
                )
            pause = delay if deadline is None else min(delay, max(deadline - time.monotonic(), 0))
            time.sleep(pause)
            delay = min(delay * 1.5, _POLL_MAX)

    def _require_success(self, entity: Any, action: str) -> None:
        """The same refusal as ``LocalPlatform``'s for an entity that has not succeeded."""
        from assay.schema.status import is_status_success, is_status_terminal

        if not is_status_success(entity.status):
            state = entity.status + (f" ({entity.reason})" if entity.reason else "")
            hint = (
                "wait for it with .wait(id)"
                if not is_status_terminal(entity.status)
                else (entity.message or "it did not succeed")
            )
            raise errors.ConflictError(
                f"cannot {action} {self.kind} {entity.id}: it is {state}; {hint}"
            )

    def __getattr__(self, name: str) -> Any:
        if name in LOCAL_ONLY:
            raise AttributeError(
                f"{self.resource}.{name} is available on LocalPlatform only: {LOCAL_ONLY[name]}"
            )
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


class TerminableGroup(RemoteGroup[E]):
    """The group of a job kind (evaluations, measurements, safety cases): ``terminate(id)``
    stops work that has not ended."""

    def terminate(self, id: str) -> E:
        """Stop the workflow: it becomes ``Terminated`` (``TerminateCommand``) at once, and its
        running work stops within a second, keeping what it wrote.
        :class:`~assay.errors.ConflictError` if it has ended already."""
        self._call("PUT", id, "terminate")
        return self.require(id)


def parse_answer(cls: type[M], data: Any, what: str) -> M:
    """``data`` (a server's answer) as ``cls``; a PlatformError when it is not one (a server
    of another version)."""
    import pydantic

    try:
        return cls.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc") or ()) or "(the answer)"
        raise errors.PlatformError(
            f"the server's answer is not a valid {what}: {where}: {first.get('msg')} "
            f"({exc.error_count()} problem(s)); is the server of another Assay version?"
        ) from None


class WorkflowLogs:
    """``logs(id)`` and ``log_lines(id)`` for the groups of kinds whose workflows keep a log
    (evaluations, sessions, measurements, safety cases), from ``GET /R/{id}/logs/workflow``:
    the same lines as ``LocalPlatform``'s."""

    def log_lines(
        self, id: str, *, limit: int | None = None, since: str | datetime | None = None
    ) -> list[LogLine]:
        """The lines of the entity's log, oldest first: those written at or after ``since``
        (``'30m'``, ``'2h'``, ``'1d'``, an ISO 8601 time or a ``datetime``), the last
        ``limit`` of them (None: all)."""
        from assay.engine.logs import LogLine, parse_since

        group: Any = self
        params = [("limit", str(limit if limit is not None else 10**9))]
        if since is not None:
            what = f"{group.kind} {id}"
            moment = parse_since(since, what=what)
            params.append(("since", moment.isoformat().replace("+00:00", "Z")))
        answer = group._call("GET", id, "logs", "workflow", params=params)
        return [LogLine.from_wire(entry) for entry in answer.get("logs") or []]

    def logs(
        self, id: str, *, limit: int | None = None, since: str | datetime | None = None
    ) -> str:
        """The entity's log as text, one ``2026-12-05T12:00:00Z [stream] message`` per line:
        what its workflow wrote, what its Method printed (a measurement, a safety case),
        what its replicas printed (a session, an evaluation's own session); so far, while it
        runs. ``limit`` and ``since`` as for :meth:`log_lines`."""
        from assay.engine.logs import format_log

        return format_log(self.log_lines(id, limit=limit, since=since))


class Families(RemoteGroup["Family"]):
    kind = "Family"
    resource = "families"
    request_name = "FamilyCreateRequest"

    def edit_members(
        self,
        id: str,
        members: Mapping[str, FamilyMemberBase | Mapping[str, Any] | None]
        | FamilyMembersEditRequest,
    ) -> Family:
        """Set tagged members of the Family ``id``: each key is a tag, each value a member
        (``{"entity": {"kind", "id"}, "description"?}``) or ``None``, which removes the tag.
        Tags not given stay as they are. Every member must exist, be visible to the token
        and be of the Family's ``memberKind``. Returns the Family."""
        from assay.schema.base import validate_model
        from assay.schema.requests import FamilyMembersEditRequest

        if isinstance(members, FamilyMembersEditRequest):
            req = members
        else:
            req = validate_model(
                FamilyMembersEditRequest, {"members": dict(members)}, what=f"Family {id} members"
            )
        body = req.model_dump(mode="json", exclude={"schemaVersion"})
        return self._parse(self._call("PATCH", id, "members", json=body))

    def get_member(self, id: str, tag: str) -> Entity | None:
        """The entity tagged ``tag`` in the Family ``id``; None when the Family has no such
        tag."""
        member = self.require(id).members.get(tag)
        if member is None:
            return None
        from assay.schema.platform import Resources

        kind = str(getattr(member.entity.kind, "value", member.entity.kind))
        group = getattr(self._client, Resources.for_kind(kind).value)
        entity: Entity = group.require(member.entity.id)
        return entity


class Methods(RemoteGroup["Method"]):
    kind = "Method"
    resource = "methods"
    request_name = "MethodCreateRequest"


class Reports(RemoteGroup["Report"]):
    """Report records: read (``get``, ``query``) where they exist; never created."""

    kind = "Report"
    resource = "reports"
    request_name = "ReportCreateRequest"

    def create(self, request: Any) -> Report:
        """Refused here, without a request to the server (which refuses it too): Reports are
        deprecated in the specification, and Assay does not run them. Create a Method and run
        it as a Measurement instead. Always an :class:`~assay.errors.ValidationError`."""
        from assay.core.kinds import reports_refused

        raise reports_refused()


class InferenceServices(RemoteGroup["InferenceService"]):
    kind = "InferenceService"
    resource = "inferenceservices"
    request_name = "InferenceServiceCreateRequest"

    def create_mock(
        self,
        mock_type: type,
        *,
        account: str | None = None,
        id: str | None = None,
        model: str | None = None,
        name: str | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> InferenceService:
        """An InferenceService backed by ``mock_type`` (anything with ``interface`` and
        ``infer(endpoint, request)``), instantiated by the server with ``kwargs``: the class
        must be importable there by its qualified name (``assay.local.mocks`` are). The mock
        is instantiated here once, to read its interface. ``account`` defaults to the
        token's."""
        if id is not None:
            raise errors.ValidationError(
                "create_mock(id=...): the server chooses the ids of new entities; leave id out",
                field="id",
                value=id,
            )
        from assay.core.kinds import mock_service_request

        request = mock_service_request(
            mock_type, account=account, model=model, name=name, kwargs=kwargs
        )
        return self.create(request)
