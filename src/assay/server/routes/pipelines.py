"""Serving pipelines over the API: ``platform.pipelines`` (:mod:`assay.pipelines.group`) on the
server, by name. Design notes: ``docs/design/pipelines.md`` ("Pipelines over the server").

=======  ======================================  ==========  ===============================
Method   Path                                    Function    Answer
=======  ======================================  ==========  ===============================
GET      /pipelines?account=                     query       list of summaries
GET      /pipelines/{name}                       get         summary, definition and steps
GET      /pipelines/{name}/versions              get         list of PipelineVersions
POST     /pipelines/{name}/deploy                create      the PipelineVersion started
POST     /pipelines/{name}/undeploy              create      the summary
POST     /pipelines/{name}/infer                 consume     the records (Arrow IPC stream)
GET      /pipelines/{name}/logs                  consume     the records (Arrow IPC stream)
GET      /pipelines/{name}/logs/export           consume     one Arrow IPC stream per segment
GET      /pipelines/{name}/log-counters          get         the log's counters
POST     /pipelines/{name}/datasets              create      ``{dataset, evaluation}``
=======  ======================================  ==========  ===============================

Every route takes ``?account=`` (default: the caller's account). A pipeline is covered by
the grants on ``pipelines`` for its account, or for the entity ``<account>/<name>``; a caller
whose grants cover neither gets 404, as for a pipeline that was never deployed.

(No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations.)
"""

import io
import itertools
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import Field

from assay import errors
from assay.pipelines.catalog import ServiceCatalog
from assay.pipelines.execution import PipelineStepError
from assay.pipelines.group import LoggedPipeline, Pipelines
from assay.pipelines.versions import PipelineVersion
from assay.schema.base import SchemaModel
from assay.server.access import Principal, acting_as, authorize, require
from assay.server.errors import error_response
from assay.server.fairness import TOO_MANY_CALLS, accountable
from assay.server.state import Caller, State, json_response
from assay.server.wire import wire_context

__all__ = [
    "ARROW_STREAM",
    "MORE_HEADER",
    "STEP_HEADER",
    "DatasetRequest",
    "DeployRequest",
    "InferRequest",
    "ServedPipelines",
    "add_pipeline_routes",
    "allow_pipeline",
    "pipeline_account",
    "pipeline_for",
    "pipeline_summary",
]

R, KIND_NAME = "pipelines", "Pipeline"
TAGS: list[Any] = [R]
#: The media type of records: an Arrow IPC stream, so that types (timestamps, ints) survive.
ARROW_STREAM = "application/vnd.apache.arrow.stream"
#: The header of ``GET /pipelines/{name}/logs`` that says whether more records match.
MORE_HEADER = "X-Assay-More-Records"
#: The header of a failed inference naming the failing step's index (the client's
#: ``PipelineStepError.step``).
STEP_HEADER = "X-Assay-Pipeline-Step"

NAME = Annotated[str, Path(description="The pipeline's name.")]
ACCOUNT = Annotated[
    str | None, Query(description="The pipeline's account (default: the caller's).")
]


class DeployRequest(SchemaModel):
    """The body of ``POST /pipelines/{name}/deploy``."""

    definition: dict[str, Any] | None = None
    """The definition to store as a new version (``PipelineDefinition`` JSON); None deploys
    the current one (the latest stored)."""
    replicas: int = Field(default=1, ge=1)
    """Replicas of every step's service."""
    version: int | None = Field(default=None, ge=1)
    """Start this stored version again instead (``definition`` must then be left out)."""


class InferRequest(SchemaModel):
    """The body of ``POST /pipelines/{name}/infer``."""

    rows: list[dict[str, Any]]
    """The input rows (JSON objects)."""
    timeout: float = Field(default=15, gt=0)
    """Seconds the inference may take (checked before each step)."""
    metadata: bool = False
    """Keep the ``metadata.*`` columns in the records."""
    concurrency: int = Field(default=1, ge=1)
    """Rows in flight at once."""
    dataset: list[str] | None = None
    """The column groups (or columns) of the records, as ``Pipeline.infer``'s ``dataset``
    (None: ``["*"]``, every group but ``metadata``)."""
    datasetExclude: list[str] | None = None
    """Column groups (or columns) to leave out (``dataset_exclude``)."""
    separator: str | None = "."
    """``dataset_separator``: ``"."`` flattened names, another string flattened names joined
    by it, null nested columns (structs)."""


class DatasetRequest(SchemaModel):
    """The body of ``POST /pipelines/{name}/datasets``."""

    start: datetime | None = None
    """The start of the window of logged traffic (inclusive; None: the first record)."""
    end: datetime | None = None
    """The end of the window (exclusive; None: the last record)."""
    name: str | None = None
    """The Dataset's name (default: ``<pipeline> traffic``)."""
    valid: bool | None = None
    """Only records without (True) or with (False) anomalies."""


class ServedPipelines:
    """The server's ``platform.pipelines`` (one :class:`Pipelines` of its core), and a lock
    per pipeline so that a deploy's ``set_definition`` and ``deploy`` go together."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.group = Pipelines(core)
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def open(self, name: str, account: str) -> LoggedPipeline:
        return self.group.create(name, account=account)

    def lock(self, name: str, account: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault((account, name), threading.Lock())

    def close(self) -> None:
        self.group.close()


# -- access ------------------------------------------------------------------------------------


def pipeline_account(principal: Principal, state: Any, account: str | None) -> str:
    """The account a pipeline request is about: the one it names, else the token's."""
    if account:
        return account
    if principal.subject.startswith("Account/"):
        return principal.subject.removeprefix("Account/")
    if state.core.default_account:
        return str(state.core.default_account)
    raise errors.ValidationError(
        "give the pipeline's account (?account=...)", field="account", value=account
    )


def _missing(name: str, account: str) -> errors.NotFoundError:
    return errors.NotFoundError(
        f"no pipeline {name!r} of account {account!r} was ever deployed; deploy it first "
        f"(POST /v0/pipelines/{name}/deploy, or Client.pipelines.create(name).deploy())",
        kind=KIND_NAME,
        id=name,
    )


def allow_pipeline(principal: Principal, name: str, account: str, *functions: str) -> None:
    """403 if no grant allows ``functions`` on pipelines at all; then the entity policy for
    the pipeline ``<account>/<name>`` (404, the same as a missing pipeline, when the caller's
    grants do not cover it; 403 when they cover it but not for these functions)."""
    if not any(principal.allows(R, f) for f in functions):
        require(principal, R, functions[0])
    try:
        authorize(
            principal, R, functions, kind=KIND_NAME, account=account, entity_id=f"{account}/{name}"
        )
    except errors.NotFoundError:
        raise _missing(name, account) from None


def pipeline_for(
    state: Any, principal: Principal, name: str, account: str | None, *functions: str
) -> LoggedPipeline:
    """The deployed-at-least-once pipeline ``name``, if the caller may call ``functions``."""
    chosen = pipeline_account(principal, state, account)
    allow_pipeline(principal, name, chosen, *functions)
    served: ServedPipelines = state.pipelines
    try:
        return served.group.get(name, account=chosen)
    except errors.NotFoundError:
        raise _missing(name, chosen) from None


# -- answers -----------------------------------------------------------------------------------


def pipeline_summary(pipeline: LoggedPipeline) -> dict[str, Any]:
    """What the list of pipelines says of one: name, account, versions, the deployed one."""
    deployed = pipeline.deployed_version
    service = pipeline.inference_service
    return {
        "name": pipeline.name,
        "account": pipeline.account,
        "versions": len(pipeline.versions()),
        "deployedVersion": deployed.version if deployed is not None else None,
        "inferenceService": service.id if service is not None else None,
        "inferenceSession": pipeline.inference_session,
    }


def _version_json(version: PipelineVersion) -> dict[str, Any]:
    return version.model_dump(mode="json", by_alias=True)


def _arrow(table: pa.Table, headers: dict[str, str] | None = None) -> Response:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return Response(sink.getvalue(), media_type=ARROW_STREAM, headers=headers)


def _streams(tables: Iterator[pa.Table]) -> Iterator[bytes]:
    for table in tables:
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        yield sink.getvalue()


def _groups(values: list[str] | None) -> list[str] | None:
    """Column groups from a repeated parameter (empty values dropped; none: all)."""
    kept = [v for v in values or [] if v]
    return kept or None


# -- routes ------------------------------------------------------------------------------------


def list_pipelines(principal: Caller, state: State, account: ACCOUNT = None) -> Response:
    chosen = pipeline_account(principal, state, account)
    require(principal, R, "query")
    served: ServedPipelines = state.pipelines
    names = [
        n
        for n in served.group.list(account=chosen)
        if principal.allows(R, "query", account=chosen, entity_id=f"{chosen}/{n}")
    ]
    return json_response([pipeline_summary(served.open(n, chosen)) for n in names])


def get_pipeline(name: NAME, principal: Caller, state: State, account: ACCOUNT = None) -> Response:
    pipeline = pipeline_for(state, principal, name, account, "get")
    latest = pipeline.versions()[-1].definition
    catalog = ServiceCatalog(state.core, name)
    return json_response(
        {
            **pipeline_summary(pipeline),
            "definition": latest.model_dump(mode="json", by_alias=True),
            "steps": latest.describe(catalog.name_of),
        }
    )


def versions(name: NAME, principal: Caller, state: State, account: ACCOUNT = None) -> Response:
    pipeline = pipeline_for(state, principal, name, account, "get")
    return json_response([_version_json(v) for v in pipeline.versions()])


def deploy(
    name: NAME,
    body: Annotated[DeployRequest, Body()],
    principal: Caller,
    state: State,
    account: ACCOUNT = None,
) -> Response:
    chosen = pipeline_account(principal, state, account)
    allow_pipeline(principal, name, chosen, "create")
    served: ServedPipelines = state.pipelines
    if body.version is not None and body.definition is not None:
        raise errors.ValidationError(
            "deploy: give either a definition (a new version) or a version (start a stored "
            "one again), not both",
            field="version",
        )
    # the steps' services are resolved with the caller's rights: another account's service
    # is answered as one that does not exist (core/references.py)
    with served.lock(name, chosen), acting_as(principal):
        pipeline = served.open(name, chosen)
        if body.version is not None:
            version = pipeline.deploy(body.replicas, version=body.version)
        else:
            if body.definition is not None:
                pipeline.set_definition(body.definition)
            version = pipeline.deploy(body.replicas)
    return json_response(_version_json(version))


def undeploy(name: NAME, principal: Caller, state: State, account: ACCOUNT = None) -> Response:
    pipeline = pipeline_for(state, principal, name, account, "create")
    pipeline.undeploy()
    return json_response(pipeline_summary(pipeline))


async def infer(
    name: NAME,
    body: Annotated[InferRequest, Body()],
    principal: Caller,
    state: State,
    account: ACCOUNT = None,
) -> Response:
    def call() -> Response:
        pipeline = pipeline_for(state, principal, name, account, "consume")
        try:
            table = pipeline.infer_table(
                body.rows,
                timeout=body.timeout,
                metadata=body.metadata,
                concurrency=body.concurrency,
                dataset=body.dataset,
                dataset_exclude=body.datasetExclude,
                dataset_separator=body.separator,
            )
        except PipelineStepError as exc:
            return error_response(
                422,
                exc.message,
                {"X-Assay-Error": "PipelineStepError", STEP_HEADER: str(exc.step)},
            )
        return _arrow(table)

    # it calls the steps' services: in the inference pool, in one of the caller's slots
    return await state.inference.call(accountable(principal), call)


def log_filters(
    start: Annotated[datetime | None, Query(description="Window start (ISO 8601).")] = None,
    end: Annotated[datetime | None, Query(description="Window end, exclusive.")] = None,
    valid: Annotated[bool | None, Query(description="Without (true) / with anomalies.")] = None,
    dataset: Annotated[list[str] | None, Query(description="Column groups to keep.")] = None,
    datasetExclude: Annotated[
        list[str] | None, Query(description="Column groups to leave out.")
    ] = None,
    separator: Annotated[str, Query(description="Where a group's name ends.")] = ".",
    nested: Annotated[
        bool, Query(description="Nested columns (structs): dataset_separator=None.")
    ] = False,
    failures: Annotated[bool, Query(description="Read the failure log.")] = False,
) -> dict[str, Any]:
    """The record selection ``logs`` and ``export`` share, as ``InferenceLog`` arguments."""
    if nested and separator != ".":
        raise errors.ValidationError(
            "give either nested=true (nested columns) or a separator (flattened names joined "
            "by it), not both",
            field="nested",
            value=separator,
        )
    return {
        "start_datetime": start,
        "end_datetime": end,
        "valid": valid,
        "dataset": _groups(dataset),
        "dataset_exclude": _groups(datasetExclude),
        "dataset_separator": None if nested else separator,
        "failures": failures,
    }


LogFilters = Annotated[dict[str, Any], Depends(log_filters)]


def logs(
    name: NAME,
    principal: Caller,
    state: State,
    filters: LogFilters,
    account: ACCOUNT = None,
    limit: Annotated[
        int | None, Query(ge=0, description="The most records to return (default 100).")
    ] = None,
    all: Annotated[bool, Query(description="Every matching record (no limit).")] = False,
) -> Response:
    if all and limit is not None:
        raise errors.ValidationError(
            "logs: give either limit or all=true, not both", field="all", value=limit
        )
    pipeline = pipeline_for(state, principal, name, account, "consume")
    table, more = pipeline.log.read(
        limit=None if all else (100 if limit is None else limit), **filters
    )
    return _arrow(table, {MORE_HEADER: "true" if more else "false"})


def export(
    name: NAME,
    principal: Caller,
    state: State,
    filters: LogFilters,
    account: ACCOUNT = None,
    limit: Annotated[int | None, Query(ge=0, description="The most records (default all).")] = None,
    startSequence: Annotated[
        int | None,
        Query(description="Resume at this record of the log (an export's `start_sequence`)."),
    ] = None,
    startFailureSequence: Annotated[
        int | None,
        Query(description="With valid=false: resume at this record of the failure log."),
    ] = None,
) -> Response:
    pipeline = pipeline_for(state, principal, name, account, "consume")
    tables = pipeline.log.export_tables(
        limit=limit,
        start_sequence=startSequence,
        start_failure_sequence=startFailureSequence,
        **filters,
    )
    # the first table (the log's start marker) comes once the selection is checked: a
    # dataset that selects nothing is answered 422, not cut off in the middle of a stream
    first = next(tables, None)
    chained = itertools.chain([] if first is None else [first], tables)
    return StreamingResponse(_streams(chained), media_type=ARROW_STREAM)


def log_counters(name: NAME, principal: Caller, state: State, account: ACCOUNT = None) -> Response:
    pipeline = pipeline_for(state, principal, name, account, "get")
    return json_response(pipeline.log_counters())


def datasets(
    name: NAME,
    body: Annotated[DatasetRequest, Body()],
    principal: Caller,
    state: State,
    account: ACCOUNT = None,
) -> Response:
    pipeline = pipeline_for(state, principal, name, account, "create")
    for resource in ("datasets", "evaluations"):
        if not principal.allows(resource, "create", account=pipeline.account):
            raise errors.PermissionDeniedError(
                f"this token (for {principal.subject}) does not allow creating {resource} for "
                f"account {pipeline.account!r}, which a pipeline's traffic becomes"
            )
    dataset, evaluation = pipeline.to_dataset(
        body.start, body.end, name=body.name, valid=body.valid
    )
    context = wire_context()  # the wire format the request asked for
    return json_response(
        {
            "dataset": dataset.model_dump(mode="json", context=context),
            "evaluation": evaluation.model_dump(mode="json", context=context),
        }
    )


_ARROW_ANSWER = {"content": {ARROW_STREAM: {}}, "description": "The records."}


def add_pipeline_routes(router: APIRouter) -> None:
    """Add the pipeline routes to ``router``."""
    routes: list[tuple[str, Any, str, str, str]] = [
        ("", list_pipelines, "GET", "list", "The pipelines of an account (needs `query`)."),
        ("/{name}", get_pipeline, "GET", "get", "A pipeline: summary, definition and steps."),
        ("/{name}/versions", versions, "GET", "versions", "Every stored version, oldest first."),
        ("/{name}/deploy", deploy, "POST", "deploy", "Store and start a version (`create`)."),
        ("/{name}/undeploy", undeploy, "POST", "undeploy", "Stop the deployed version."),
        ("/{name}/infer", infer, "POST", "infer", "Run rows through the deployed version."),
        ("/{name}/logs", logs, "GET", "logs", "Logged records (Arrow IPC stream)."),
        ("/{name}/logs/export", export, "GET", "export", "One Arrow IPC stream per segment."),
        ("/{name}/log-counters", log_counters, "GET", "log_counters", "The log's counters."),
        ("/{name}/datasets", datasets, "POST", "datasets", "Logged traffic as a Dataset."),
    ]
    for path, endpoint, method, operation, description in routes:
        extra: dict[str, Any] = {}
        if endpoint in (infer, logs, export):
            extra["responses"] = {200: _ARROW_ANSWER}
            extra["response_class"] = Response
        if endpoint is infer:
            extra["responses"].update(TOO_MANY_CALLS)
        router.add_api_route(
            f"/{R}{path}",
            endpoint,
            methods=[method],
            operation_id=f"{R}_{operation}",
            summary=f"Pipeline {operation.replace('_', ' ')}",
            description=description,
            tags=TAGS,
            **extra,
        )
