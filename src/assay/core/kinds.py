"""The groups of the kinds whose create only resolves references: services, sessions,
evaluations, methods, measurements, safety cases and reports (families: ``families.py``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay import errors
from assay.analysis.checks import check_method
from assay.analysis.runtime import DOCUMENT_FILE
from assay.core.datasets import open_entity_data
from assay.core.groups import EntityGroup, TerminableGroup, ended_conflict
from assay.core.logs import WorkflowLogs
from assay.core.tokens import Minter
from assay.schema import ids
from assay.schema.base import validate_model
from assay.schema.platform import (
    Curve,
    Evaluation,
    ForeignInferenceService,
    ForeignMethod,
    ForeignModel,
    InferenceService,
    InferenceSession,
    InferenceSessionAndToken,
    Method,
    Report,
    Score,
)
from assay.schema.requests import (
    AnalysisCreateRequest,
    EvaluationCreateRequest,
    InferenceServiceCreateRequest,
    InferenceSessionCreateRequest,
    MethodCreateRequest,
    ReportCreateRequest,
)
from assay.schema.status import Status

if TYPE_CHECKING:
    import pyarrow.dataset

    from assay.inference.client import InferenceSessionClient

#: How long a session token lasts unless asked otherwise (never past the session's expiry).
DEFAULT_TOKEN_SECONDS = 24 * 3600
#: Said by a refused session token: Assay verifies them, where the reference's local
#: platform ignores them (``docs/design/wire-format.md``, "Where Assay differs").
TOKEN_CHECKED = (
    "Assay checks session tokens, on the embedded platform too (the reference's local "
    "platform ignores them): pass the token that inferencesessions.create() returned"
)

__all__ = [
    "Evaluations",
    "InferenceServices",
    "InferenceSessions",
    "Measurements",
    "Methods",
    "Reports",
    "SafetyCases",
    "mock_service_request",
    "reports_refused",
]


def check_replicas(service: InferenceService, replicas: int, *, what: str, field: str) -> None:
    """Refuse more replicas than the service's runner can start (nothing is written)."""
    from assay.inference.runners.base import runner_for

    if service.runner is None:
        return
    try:
        runner = runner_for(service.runner.kind)
    except errors.AssayError:
        return  # an unknown kind is refused where the session starts, naming it
    most, why = runner.most_replicas()
    if replicas > most:
        raise errors.ValidationError(
            f"{what}: {field} is {replicas}, more than the {service.runner.kind} runner of "
            f"InferenceService {service.id} allows ({why}); expected at most {most}",
            field=field,
            value=replicas,
        )


def check_expires(expires: datetime | None, *, what: str, field: str) -> None:
    """Refuse an ``expires`` that has passed already: the session would end before it
    started (and nothing is written)."""
    if expires is None:
        return
    now = datetime.now(UTC)
    if expires <= now:
        when = expires.isoformat().replace("+00:00", "Z")
        raise errors.ValidationError(
            f"{what}: {field} {when} is in the past (it is now "
            f"{now.isoformat(timespec='seconds').replace('+00:00', 'Z')}); expected a time in "
            "the future, e.g. datetime.now(timezone.utc) + timedelta(hours=1), or leave it out "
            "for a session that runs until it is terminated",
            field=field,
            value=when,
        )


def _canonical(records: Sequence[Any]) -> list[str]:
    return sorted(json.dumps(r.to_wire(), sort_keys=True) for r in records)


def foreign(foreign_type: type[Any], entity: Any) -> dict[str, Any]:
    """The fields of ``entity`` that its ``Foreign*`` copy carries (by wire name)."""
    wire = entity.to_wire()
    names = {f.alias or n for n, f in foreign_type.model_fields.items()}
    return {k: v for k, v in wire.items() if k in names}


def mock_service_request(
    mock_type: Any,
    *,
    account: str | None = None,
    model: str | None = None,
    name: str | None = None,
    kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The create request of an InferenceService backed by ``mock_type`` (instantiated once
    here, with ``kwargs``, to read its interface). Used by ``create_mock`` locally and
    remotely. Without ``account`` the request names none (the group fills in its default)."""
    from assay.inference.runners.mock import qualified_name

    try:
        instance = mock_type(**(kwargs or {}))
        interface = instance.interface
    except Exception as exc:
        raise errors.ValidationError(
            f"mock {getattr(mock_type, '__name__', mock_type)!r} could not be instantiated: {exc}",
            field="mock_type",
        ) from None
    request: dict[str, Any] = {
        "name": name or f"mock-{mock_type.__name__}",
        "runner": {
            "kind": "mock",
            "configuration": {"mockType": qualified_name(mock_type), "kwargs": kwargs or {}},
        },
        "interface": interface.model_dump(by_alias=True)
        if hasattr(interface, "model_dump")
        else interface,
    }
    if account is not None:
        request["account"] = account
    if model is not None:
        request["model"] = model
    return request


class InferenceServices(EntityGroup[InferenceService]):
    kind = "InferenceService"
    request_type = InferenceServiceCreateRequest
    ref_filters = ("model", "modules")

    def _build(self, request: Any) -> InferenceService:
        body = request.model_dump(
            by_alias=True, exclude_none=True, exclude={"schemaVersion", "model"}
        )
        if request.model:
            body["model"] = foreign(
                ForeignModel, self._resolve("Model", request.model, field="model")
            )
        return self._checked(self._new(body))

    def _checked(self, service: InferenceService) -> InferenceService:
        from assay.inference.runners.base import runner_for

        if service.runner is None:
            raise errors.ValidationError(
                f"InferenceService {service.name!r}: runner is required (e.g. {{'kind': 'http', "
                "'configuration': {'url': ...}}})",
                field="runner",
            )
        runner = runner_for(service.runner.kind)
        for i, module in enumerate(service.runner_modules()):
            if module is not None:
                self._resolve("Module", module, field=f"runner.configuration.modules[{i}]")
        runner.check(service, self._core.sessions.env())
        return service

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
        ``infer(endpoint, request)``, importable by its qualified name), instantiated in the
        platform's process with ``kwargs``. ``account`` defaults to the platform's."""
        request = self._with_default_account(
            mock_service_request(mock_type, account=account, model=model, name=name, kwargs=kwargs)
        )
        req = validate_model(
            InferenceServiceCreateRequest, request, what="InferenceService create request"
        )
        entity = self._build(req)
        if id is not None:
            if not ids.is_entity_id(id):
                raise errors.ValidationError(
                    f"id {id!r} is not an entity id (32 lowercase hex digits)", field="id"
                )
            entity = entity.model_copy(update={"id": id})
        return self._insert(entity)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _check_minter(minter: Minter, session: InferenceSession, until: float | None) -> None:
    """Refuse a session token that would outlive (an asked-for expiry ``until``) or out-grant
    the token ``minter`` making it."""
    what = f"InferenceSession {session.id} token request"
    if not minter.allows("inferencesessions", "consume", session.account, session.id):
        raise errors.PermissionDeniedError(
            f"{what}: the token allows 'consume' on the session, which the token making it does "
            "not: a token never allows more than the token that makes it"
        )
    if until is not None and until > minter.expires:
        raise errors.ValidationError(
            f"{what}: expires {_when(until)} is after the expiry of the token making it "
            f"({_when(minter.expires)}); a token never outlives the token that makes it: ask "
            f"for an expiry no later than {_when(minter.expires)}, or leave expires out (the "
            "new token then expires with yours at the latest)",
            field="expires",
            value=_when(until),
        )


class InferenceSessions(WorkflowLogs, EntityGroup[InferenceSession]):
    kind = "InferenceSession"
    request_type = InferenceSessionCreateRequest
    ref_filters = ("inferenceService", "model")

    def _build(self, request: Any) -> InferenceSession:
        check_expires(request.expires, what="InferenceSession create request", field="expires")
        body = request.model_dump(by_alias=True, exclude_none=True, exclude={"schemaVersion"})
        service = self._resolve(
            "InferenceService", request.inferenceService, field="inferenceService"
        )
        check_replicas(
            service, request.replicas, what="InferenceSession create request", field="replicas"
        )
        body["inferenceService"] = foreign(ForeignInferenceService, service)
        return self._new(body)

    def get(self, id: str) -> InferenceSession | None:
        """The session (None if there is none); one past its ``expires`` is ``Terminated``
        (``Expired``) already."""
        session = super().get(id)
        if session is not None and self._expired(session):
            session = super().get(id)
        return session

    def query(self, **filters: Any) -> list[InferenceSession]:
        """Sessions matching every filter (as :meth:`EntityGroup.query`); those past their
        ``expires`` are ``Terminated`` (``Expired``) already."""
        found = super().query(**filters)
        if any(self._expired(s) for s in found):
            found = super().query(**filters)
        return found

    def _expired(self, session: InferenceSession) -> bool:
        """Mark a Ready session past its ``expires`` Terminated; whether it did."""
        if session.status != Status.Ready or session.expires is None:
            return False
        return session.expires <= datetime.now(UTC) and self._core.sessions.expire(session.id)

    def delete(self, id: str) -> None:
        """Mark the session ``Deleted`` and stop its replicas; clients made before refuse
        inference from then on."""
        had_replicas = self.require(id).status in (Status.Admitted, Status.Ready)
        super().delete(id)
        self._core.sessions.stop(id, "deleted" if had_replicas else None)

    def create(self, request: Any) -> InferenceSessionAndToken:  # type: ignore[override]
        """Start a session (its replicas run once it is ``Ready``) and return it with a token
        for inference calls."""
        return self.create_minted(request, None)

    def create_minted(self, request: Any, minter: Minter | None) -> InferenceSessionAndToken:
        """:meth:`create`, the token made with ``minter``, the caller's token over the server
        (see :meth:`token`). Not a method of ``LocalPlatform``'s groups (it has no tokens of
        its own)."""
        if minter is not None:
            account = getattr(request, "account", None)
            if not minter.allows("inferencesessions", "consume", account, None):
                raise errors.PermissionDeniedError(
                    f"InferenceSession create request: the session's token allows 'consume' on "
                    f"inferencesessions of account {account!r}, which the token making it does "
                    "not: a token never allows more than the token that makes it. Ask for a "
                    "token with a grant for it (e.g. assay token create --grant "
                    "inferencesessions:create,consume)"
                )
        session = super().create(request)
        return InferenceSessionAndToken(
            inferencesession=session, token=self.token_minted(session.id, None, minter)
        )

    def token(self, id: str, expires: datetime | None = None) -> str:
        """A token that allows inference on this session only, until ``expires`` (default: one
        day, and never past the session's own expiry)."""
        return self.token_minted(id, expires, None)

    def token_minted(self, id: str, expires: datetime | None, minter: Minter | None) -> str:
        """:meth:`token`, asked for by ``minter``, the token asking for it (over the server): the new token never outlives
        it (an ``expires`` after the minter's expiry is refused; the default is cut to it),
        never allows more (the minter must allow ``consume`` on the session) and is revoked
        with it (it carries the minter's lineage)."""
        session = self.require(id)
        now = time.time()
        until = expires.timestamp() if expires is not None else now + DEFAULT_TOKEN_SECONDS
        if expires is not None and expires.tzinfo is None:
            raise errors.ValidationError(
                "expires must be timezone-aware, e.g. datetime.now(timezone.utc) + timedelta(hours=1)",
                field="expires",
            )
        if minter is not None:
            _check_minter(minter, session, until if expires is not None else None)
            until = min(until, minter.expires)
        if session.expires is not None:
            until = min(until, session.expires.timestamp())
        if until <= now:
            raise errors.ValidationError(
                f"InferenceSession {id}: the token would already be expired", field="expires"
            )
        grant = {
            "resources": ["inferencesessions"],
            "functions": ["consume"],
            "accounts": [],
            "entities": [id],
        }
        token: str = self._core.signer.sign(
            subject=f"InferenceSession/{id}",
            grants=[grant],
            expires=until,
            lineage=minter.child_lineage if minter is not None else (),
        )
        return token

    def authorize(self, id: str, token: str) -> None:
        """Refuse ``token`` unless it is valid, unexpired and allows inference on ``id``.

        Assay checks session tokens on the embedded platform too (the reference's local
        platform ignores them); the errors say so."""
        try:
            claims = self._core.signer.verify(token)
        except errors.AuthenticationError as exc:
            raise errors.AuthenticationError(f"{exc}; {TOKEN_CHECKED}") from None
        session = self.require(id)
        for grant in claims.get("grants") or []:
            resources = grant.get("resources") or []
            functions = grant.get("functions") or []
            if not (
                {"inferencesessions", "*"} & set(resources) and {"consume", "*"} & set(functions)
            ):
                continue
            if {id, "*"} & set(grant.get("entities") or []) or {session.account, "*"} & set(
                grant.get("accounts") or []
            ):
                return
        raise errors.PermissionDeniedError(
            f"the token does not allow inference on InferenceSession {id} (it was made for {claims.get('sub')}); "
            f"get one with inferencesessions.token({id!r}). {TOKEN_CHECKED}"
        )

    def _expiry_check(self, token: str, session_id: str) -> Callable[[], None]:
        """A cheap per-call check for a token already verified: it has not expired since. (A
        token ends with its session: a session that has ended says so instead.)"""
        expires = self._core.signer.verify(token)["exp"]

        def check() -> None:
            if time.time() >= expires:
                self._core.sessions.status_check(session_id)(force=True)
                raise errors.AuthenticationError(
                    "the token has expired; ask for a new one (e.g. inferencesessions.token(id))"
                )

        return check

    def ready(self, id: str) -> bool:
        """True when the session is ``Ready`` and its replicas answer."""
        self.require(id)
        return bool(self._core.sessions.ready(id))

    def terminate(self, id: str) -> InferenceSession:
        """Stop the session's replicas; it becomes ``Terminated`` (``TerminateCommand``), and
        clients made before refuse inference. :class:`~assay.errors.ConflictError` if it has
        ended already."""
        self.require(id)
        if not self._core.sessions.terminate(id):
            raise ended_conflict(self.require(id), "terminate")
        return self.require(id)

    def client(
        self,
        session_id: str,
        token: str,
        *,
        interface: Any = None,
        endpoint: str | None = None,
        input_adapter: Any = None,
        output_adapter: Any = None,
        timeout: float = 30.0,
    ) -> InferenceSessionClient:
        """A client for inference calls to the session. Without ``interface`` the service's
        own interface is used; ``endpoint`` and the adapters override its parts.

        Replies are checked against ``interface.outputSchema`` — unless ``output_adapter``
        overrides the output pipeline: the schema does not describe the items the override
        yields, so then each is only checked to be a JSON object (see
        :meth:`~assay.inference.client.InferenceSessionClient.for_interface`)."""
        from assay.inference.client import InferenceSessionClient
        from assay.schema.platform import InferenceInterface

        self.authorize(session_id, token)
        session = self.require(session_id)
        if interface is None:
            interface = session.inferenceService.interface
        elif not isinstance(interface, InferenceInterface):
            interface = validate_model(InferenceInterface, interface, what="interface")
        return InferenceSessionClient.for_interface(
            self._core.sessions.caller(session_id, timeout=timeout),
            interface,
            endpoint=endpoint,
            input_adapter=input_adapter,
            output_adapter=output_adapter,
            authorize=self._expiry_check(token, session_id),
            what=f"InferenceSession {session_id}",
        )

    def infer(self, id: str, endpoint: str, request: dict[str, Any]) -> list[dict[str, Any]]:
        """One raw inference call (no adapters): the service's reply as a list of objects."""
        caller = self._core.sessions.caller(id)
        try:
            reply = caller.call(endpoint.strip("/"), request)
        finally:
            caller.close()
        return list(reply) if isinstance(reply, list) else [reply]


class _OutputData:
    """``open(id)`` for kinds whose workflow writes Parquet data (evaluations, measurements).

    The data is every ``.parquet`` artifact of the entity outside hidden directories (a
    workflow keeps its bookkeeping under ``.assay/``); it can be opened once the workflow is
    ``Complete``, never before, so a reader never sees half the data.
    """

    def open(self, id: str) -> pyarrow.dataset.Dataset:
        """The workflow's output data as a ``pyarrow.dataset.Dataset`` (read lazily)."""
        group: Any = self
        entity = group.require(id)
        group._require_success(entity, "open")
        return open_entity_data(group._core, entity, self.data_paths(entity))

    def data_paths(self, entity: Any) -> list[str]:
        """The artifact paths of the entity's Parquet data."""
        group: Any = self
        return [
            info.path
            for info in group._core.storage.list(entity.id)
            if info.path.endswith(".parquet")
            and not any(p.startswith(".") for p in info.path.split("/"))
        ]


class Evaluations(_OutputData, WorkflowLogs, TerminableGroup[Evaluation]):
    kind = "Evaluation"
    request_type = EvaluationCreateRequest
    ref_filters = ("dataset", "inferenceService", "model", "inferenceSession")

    def _build(self, request: Any) -> Evaluation:
        body = request.model_dump(
            by_alias=True, exclude_none=True, exclude={"schemaVersion", "inferenceSession"}
        )
        self._resolve("Dataset", request.dataset, field="dataset")
        if request.inferenceSessionReference:
            session = self._resolve(
                "InferenceSession",
                request.inferenceSessionReference,
                field="inferenceSessionReference",
            )
            spec = session.to_wire()
            names = {"inferenceService", "expires", "replicas", "accelerator", "useSpotPods"}
            body["inferenceSession"] = {k: v for k, v in spec.items() if k in names}
        else:
            check_expires(
                request.inferenceSession.expires,
                what="Evaluation create request",
                field="inferenceSession.expires",
            )
            spec = request.inferenceSession.model_dump(by_alias=True, exclude_none=True)
            service = self._resolve(
                "InferenceService",
                spec["inferenceService"],
                field="inferenceSession.inferenceService",
            )
            check_replicas(
                service,
                request.inferenceSession.replicas,
                what="Evaluation create request",
                field="inferenceSession.replicas",
            )
            spec["inferenceService"] = foreign(ForeignInferenceService, service)
            body["inferenceSession"] = spec
        return self._new(body)

    def local_evaluation(self, *, dataset: str, inferencesession: str) -> str:
        """Evaluate the Dataset ``dataset`` with the running session ``inferencesession`` (an
        Evaluation with ``inferenceSessionReference``); returns the evaluation's id. With
        ``LocalPlatform(remote_client=...)`` the session is one running on the server, which
        answers the local Dataset's instances (see ``docs/design/client.md``, "Remote
        mode")."""
        if self.remote_source is not None:
            return self.remote_source.local_evaluation(
                self, dataset=dataset, inferencesession=inferencesession
            )
        session = self._resolve("InferenceSession", inferencesession, field="inferencesession")
        request = {
            "account": session.account,
            "dataset": dataset,
            "inferenceSessionReference": inferencesession,
        }
        return self.create(request).id

    def import_data(
        self,
        dataset_directory: str | Path,
        *,
        id: str | None = None,
        evaluation_request: Any = None,
        account: str | None = None,
    ) -> Evaluation:
        """Register evaluation outputs made elsewhere (Parquet files with ``_index_``,
        ``_replication_`` and ``responses``) as a ``Complete`` Evaluation, so Methods can use
        them. With ``evaluation_request`` the entity records the Dataset and service they came
        from; without it, a placeholder service named ``imported``. ``account`` (default: the
        platform's) owns it unless the request names another."""
        from assay.core.imports import import_evaluation

        return import_evaluation(
            self, Path(dataset_directory), id=id, request=evaluation_request, account=account
        )


class Methods(EntityGroup[Method]):
    kind = "Method"
    request_type = MethodCreateRequest
    ref_filters = ("modules",)
    field_filters = {"outputKind": "output.kind"}

    def _build(self, request: Any) -> Method:
        modules = [
            self._resolve("Module", module, field=f"modules[{i}]")
            for i, module in enumerate(request.modules)
        ]
        check_method(self._core.storage, request, modules)
        return super()._build(request)


class _Analyses(WorkflowLogs, TerminableGroup[Any]):
    """Measurements and safety cases: both apply a Method to some inputs."""

    request_type = AnalysisCreateRequest
    ref_filters = ("method", "dataset", "evaluation", "inferenceService", "model", "inputs")
    output_kind: str

    def _build(self, request: Any) -> Any:
        method: Method = self._resolve("Method", request.method, field="method")
        what = f"{self.kind} create request"
        if method.output.kind != self.output_kind:
            other = "measurements" if method.output.kind == "Measurement" else "safetycases"
            raise errors.ValidationError(
                f"{what}: Method {method.id} ({method.name!r}) produces a {method.output.kind}, "
                f"not a {self.kind}; create it with {other}.create(...)",
                field="method",
                value=method.id,
            )
        declared = {i.keyword: str(getattr(i.kind, "value", i.kind)) for i in method.inputs}
        given = {i.keyword: i.entity for i in request.inputs}
        for keyword in sorted(set(given) - set(declared)):
            raise errors.ValidationError(
                f"{what}: input {keyword!r} is not an input of Method {method.id}; "
                f"its inputs are {sorted(declared) or 'none'}",
                field="inputs",
                value=keyword,
            )
        for keyword in sorted(set(declared) - set(given)):
            raise errors.ValidationError(
                f"{what}: Method {method.id} needs the input {keyword!r} "
                f"(a {declared[keyword]}); "
                "add it to inputs",
                field="inputs",
                value=keyword,
            )
        for keyword, entity_id in given.items():
            self._resolve(declared[keyword], entity_id, field=f"inputs[{keyword}]")
        parameters = {p.keyword for p in method.parameters}
        for argument in request.arguments:
            if argument.keyword not in parameters:
                raise errors.ValidationError(
                    f"{what}: argument {argument.keyword!r} is not a parameter of Method "
                    f"{method.id}; its parameters are {sorted(parameters) or 'none'}",
                    field="arguments",
                    value=argument.keyword,
                )
        scope = request.scope.model_dump(by_alias=True, exclude_none=True)
        # what the evaluation carries (resolved when it was created) needs no second look
        carried: dict[str, str | None] = {}
        if scope.get("evaluation"):
            evaluation: Evaluation = self._resolve(
                "Evaluation", scope["evaluation"], field="scope.evaluation"
            )
            service = evaluation.inferenceSession.inferenceService
            carried = {
                "dataset": evaluation.dataset,
                "inferenceService": service.id,
                "model": service.model.id if service.model is not None else None,
            }
        # every other id the scope names is resolved: it must be an entity the caller may use
        for key, ref_kind in (("dataset", "Dataset"), ("model", "Model")):
            if scope.get(key) and scope[key] != carried.get(key):
                self._resolve(ref_kind, scope[key], field=f"scope.{key}")
        if scope.get("inferenceService") and scope["inferenceService"] != carried.get(
            "inferenceService"
        ):
            service_entity: InferenceService = self._resolve(
                "InferenceService", scope["inferenceService"], field="scope.inferenceService"
            )
            if not (scope.get("model") or carried.get("model")) and service_entity.model:
                scope["model"] = service_entity.model.id
        for key, value in carried.items():
            if value is not None:
                scope.setdefault(key, value)
        scope_kind = getattr(method.scope, "value", method.scope)
        needed = (
            ["evaluation", "inferenceService", "dataset"]
            if scope_kind == "Evaluation"
            else ["inferenceService"]
        )
        missing = [k for k in needed if not scope.get(k)]
        if missing:
            raise errors.ValidationError(
                f"{what}: Method {method.id} has scope {scope_kind}, so scope.{missing[0]} must be set "
                f"(set scope.evaluation and the rest is filled in from the Evaluation)",
                field=f"scope.{missing[0]}",
            )
        body = request.model_dump(
            by_alias=True, exclude_none=True, exclude={"schemaVersion", "method", "scope"}
        )
        body["scope"] = scope
        body["method"] = foreign(ForeignMethod, method)
        body.update(self._output_fields(method))
        return self._new(body)

    def _output_fields(self, method: Method) -> dict[str, Any]:
        raise NotImplementedError


class Measurements(_OutputData, _Analyses):
    kind = "Measurement"
    output_kind = "Measurement"

    def _output_fields(self, method: Method) -> dict[str, Any]:
        spec = method.output.measurement
        if spec is None:  # guarded by the Method's own validation
            raise errors.PlatformError(f"Method {method.id} has no measurement spec")
        return spec.model_dump(by_alias=True, exclude_none=True)


class SafetyCases(_Analyses):
    kind = "SafetyCase"
    output_kind = "SafetyCase"

    def scores(self, id: str) -> list[Score]:
        """The scores the safety case ``id`` published."""
        self.require(id)
        return self._core.scores.query(analysis=id)

    def _import_related(self, entity: Any, records: Sequence[Any]) -> None:
        """An imported safety case's Score and Curve records (of this safety case only)."""
        for record in records:
            if not isinstance(record, Score | Curve) or record.analysis != entity.id:
                raise errors.ValidationError(
                    f"imported SafetyCase {entity.id}: {record!r:.80} is not one of its scores "
                    "or curves",
                    field="records",
                )
        current: list[Score | Curve] = [*self._core.scores.query(analysis=entity.id)]
        current += self._core.scores.curves(analysis=entity.id)
        if _canonical(current) != _canonical(records):
            self._core.scores._put(entity.account, records)

    def curves(self, id: str) -> list[Curve]:
        """The curves the safety case ``id`` published."""
        self.require(id)
        return self._core.scores.curves(analysis=id)

    def document(self, id: str) -> str:
        """The rendered document (one self-contained HTML page) of a ``Complete`` safety
        case."""
        entity = self.require(id)
        self._require_success(entity, "read the document of")
        return self._core.storage.read_bytes(id, DOCUMENT_FILE).decode("utf-8")

    def document_path(self, id: str) -> Path:
        """The local file of the safety case's HTML document (to open in a browser)."""
        entity = self.require(id)
        self._require_success(entity, "read the document of")
        path = self._core.storage.local_path(id, DOCUMENT_FILE)
        if path is None:  # a storage elsewhere (S3): a copy on this machine
            return self._core.storage.local_copy(id, [DOCUMENT_FILE]) / DOCUMENT_FILE
        return Path(path)

    def _output_fields(self, method: Method) -> dict[str, Any]:
        spec = method.output.safetyCase
        if spec is None:
            raise errors.PlatformError(f"Method {method.id} has no safety case spec")
        return spec.model_dump(by_alias=True, exclude_none=True)


def reports_refused() -> errors.ValidationError:
    """The refusal of every Report create request (LocalPlatform, the Client, the server)."""
    return errors.ValidationError(
        "Report create request refused: Reports are deprecated in the specification (creation "
        "of new Reports is disabled) and Assay does not run them. To compute statistics over an "
        "Evaluation, create a Method (a Python function or notebook over the Evaluation) with "
        "methods.create(...) and run it as a Measurement with measurements.create(...)",
        entity="Report",
    )


class Reports(EntityGroup[Report]):
    """Report records: read (``get``, ``query``) where they exist, e.g. imported ones; never
    created (:func:`reports_refused`)."""

    kind = "Report"
    request_type = ReportCreateRequest
    ref_filters = ("evaluation", "dataset", "inferenceService", "model")

    def create(self, request: Any) -> Report:
        """Refused: Reports are deprecated in the specification, and Assay does not run them.
        Create a Method and run it as a Measurement instead. Always an
        :class:`~assay.errors.ValidationError`; nothing is stored."""
        raise reports_refused()
