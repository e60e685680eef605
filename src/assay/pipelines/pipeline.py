"""``Pipeline``: an ordered list of steps over InferenceServices, deployed as immutable
versions and run in-process. Design notes: ``docs/design/pipelines.md``."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from assay import errors
from assay.pipelines._html import html_table
from assay.pipelines._log_read import columns_of, separator_of, shaped
from assay.pipelines._records import Records
from assay.pipelines.builder import PipelineBuilder, check_name
from assay.pipelines.catalog import ANSWERING
from assay.pipelines.definition import PipelineDefinition
from assay.pipelines.execution import INPUT_STEP, PipelineStepError
from assay.pipelines.inputs import as_kind, check_call, read_file, rows_of
from assay.pipelines.log import Durability, check_durability
from assay.pipelines.runner import PipelineService
from assay.pipelines.versions import PipelineVersion, VersionStore

__all__ = ["PIPELINE_LABEL", "VERSION_LABEL", "Pipeline"]

_SERVICE_NAMESPACE = uuid.UUID("0b8f3a52-61c4-4d0e-9a77-2f5d1c9e4b63")
#: The label of a pipeline's InferenceServices and sessions: the pipeline's name.
PIPELINE_LABEL = "assay.io/pipeline"
#: The label of a pipeline's InferenceService: its version number.
VERSION_LABEL = "assay.io/pipeline-version"

#: A hook that receives a table of records.
RecordHook = Callable[[pa.Table], None]


class Pipeline(PipelineBuilder):
    """A serving pipeline over the InferenceServices of ``platform``.

    >>> pipeline = Pipeline(platform, "sentiment", account="me")       # doctest: +SKIP
    >>> pipeline.add_model_step(classifier).add_validations(low="out.scores is None")
    >>> pipeline.deploy()
    >>> pipeline.infer({"text": "great"})

    ``platform`` is a ``LocalPlatform`` or a platform core. Opening a pipeline that has
    versions starts from the definition of its latest version, and finds the version that
    is deployed, if any. Every inference is appended to the pipeline's inference log (by the
    deployed version, wherever it is called); ``on_record(table)`` receives the records of
    every inference made through this object that passed, and ``on_failure(table)`` those of
    the ones that failed (with ``error.*`` columns). ``durable_log`` (default True): an
    inference made through this object returns (or raises, for a failed row) only once its
    records are written to the log, so that no death of the process loses an answered (or
    refused) inference; ``"fsync"``: only once they are fsynced too, so that a power loss
    loses none either (each call then waits for an ``fsync``, shared by the calls made at
    the same moment); False answers at once, and a crash can then lose the records of the
    last few milliseconds.
    """

    def __init__(
        self,
        platform: Any,
        name: str,
        *,
        account: str | None = None,
        on_record: RecordHook | None = None,
        on_failure: RecordHook | None = None,
        input_schema: Any = None,
        durable_log: Durability = True,
    ) -> None:
        check_name(name)
        self._platform = platform
        self._core: Any = getattr(platform, "core", platform)
        default_account = getattr(platform, "account", None) or self._core.default_account
        self.account: str = account or default_account
        if not self.account:
            raise errors.ValidationError(
                f"pipeline {name!r}: no account given and the platform has no default",
                field="account",
            )
        self.on_record = on_record
        self.on_failure = on_failure
        check_durability(durable_log, "durable_log")
        self.durable_log = durable_log
        self._versions = VersionStore(self._core.store, pipeline=name, account=self.account)
        existing = self._versions.list()
        super().__init__(
            self._core, name, existing[-1].definition if existing else PipelineDefinition()
        )
        if input_schema is not None:
            self.set_input_schema(input_schema)
        self._live: PipelineService | None = None

    # -- versions ----------------------------------------------------------------------------

    def deploy(self, replicas: int = 1, *, version: int | None = None) -> PipelineVersion:
        """Store the current definition as a new immutable version and start it: an
        InferenceService of runner kind ``pipeline`` for the version and a session of it
        (``replicas`` replicas of every step's service). With ``version``, start that stored
        version again, whole, and make its definition the current one."""
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise errors.ValidationError(
                f"replicas must be an integer of at least 1, got {replicas!r}",
                field="replicas",
                value=replicas,
            )
        if version is not None:
            chosen = self._versions.get(version)
            self._catalog.compile(chosen.definition)
        else:
            definition = self.definition
            self._catalog.compile(definition)
            chosen = self._versions.add(definition)
        self._start(chosen, replicas)
        self._steps = list(chosen.definition.steps)
        self._input_schema = chosen.definition.inputSchema
        return chosen

    def undeploy(self) -> None:
        """Stop the deployed version's session (and its step sessions); its records stay."""
        for session in self._deployed_sessions():
            with contextlib.suppress(errors.AssayError):  # already gone: nothing to stop
                self._core.sessions.terminate(session["id"])
        self._live = None

    def versions(self) -> list[PipelineVersion]:
        """Every stored version, oldest first."""
        return self._versions.list()

    def get_pipeline_configuration(self, version: str | int) -> dict[str, Any]:
        """The configuration of version ``version`` (its number, as an int or a str like
        ``"2"``, or its id): the stored :class:`PipelineVersion` as JSON — ``id``,
        ``pipeline``, ``account``, ``version``, ``created`` and the whole ``definition``
        (steps, input schema) — as the server's ``versions`` route gives it."""
        return self._versions.find(version).model_dump(mode="json", by_alias=True)

    @property
    def deployed_version(self) -> PipelineVersion | None:
        """The version running now, as the platform records it (None: not deployed)."""
        sessions = self._deployed_sessions()
        if not sessions:
            return None
        config = (sessions[-1].get("inferenceService", {}).get("runner") or {}).get(
            "configuration"
        ) or {}
        return self._versions.get(int(config["version"]))

    @property
    def inference_service(self) -> Any:
        """The InferenceService of the deployed version (runner kind ``pipeline``; evaluate
        it like any other system), or None when not deployed."""
        sessions = self._deployed_sessions()
        if not sessions:
            return None
        return self._core.inferenceservices.require(sessions[-1]["inferenceService"]["id"])

    @property
    def inference_session(self) -> str | None:
        """The id of the deployed version's InferenceSession (None: not deployed)."""
        sessions = self._deployed_sessions()
        return str(sessions[-1]["id"]) if sessions else None

    def _deployed_sessions(self) -> list[dict[str, Any]]:
        from assay.schema.status import Status

        docs = self._core.store.query(
            kind="InferenceSession",
            account=self.account,
            labels={PIPELINE_LABEL: self.name},
            status=Status.Ready,
        )
        return sorted(docs, key=lambda d: str(d.get("creationTime", "")))

    # -- inference -----------------------------------------------------------------------------

    def infer(
        self,
        data: Any,
        timeout: float | None = 15,
        dataset: Sequence[str] | str | None = None,
        dataset_exclude: Sequence[str] | str | None = None,
        dataset_separator: Sequence[str] | str | None = ".",
        *,
        metadata: bool = False,
    ) -> Any:
        """Run ``data`` (a dict, a list of dicts, a pandas DataFrame or a pyarrow Table: one
        row each) through the deployed version; the records come back as the same kind (a
        DataFrame for a DataFrame, a Table for a Table).

        ``timeout``: seconds (default 15; None is the default). A step still running at the
        timeout is given up (it runs on in its thread; its late answer is discarded): the
        rows fail, naming the step and the timeout, go to the failure log, and the call
        raises :class:`PipelineStepError`. ``dataset``: the column groups of the records —
        by default (``["*"]``) ``time``, ``in``, ``out`` and ``check_failures`` (the
        ``anomaly.*`` columns); ``"metadata"`` only when asked for (``["*", "metadata"]``,
        or ``metadata=True``); whole column names work too. ``dataset_exclude``: groups or
        columns to leave out. ``dataset_separator``: ``"."`` flattened names (``in.text``),
        another string flattened names joined by it, None nested columns (``in`` a struct —
        a dict in Python)."""
        return self._infer(
            data,
            timeout=timeout,
            metadata=metadata,
            concurrency=1,
            dataset=dataset,
            dataset_exclude=dataset_exclude,
            dataset_separator=dataset_separator,
        )

    def parallel_infer(
        self,
        data: Any,
        concurrency: int = 8,
        timeout: float | None = 15,
        *,
        metadata: bool = False,
        dataset: Sequence[str] | str | None = None,
        dataset_exclude: Sequence[str] | str | None = None,
        dataset_separator: Sequence[str] | str | None = ".",
    ) -> Any:
        """As :meth:`infer`, with up to ``concurrency`` rows in flight at once."""
        return self._infer(
            data,
            timeout=timeout,
            metadata=metadata,
            concurrency=concurrency,
            dataset=dataset,
            dataset_exclude=dataset_exclude,
            dataset_separator=dataset_separator,
        )

    def infer_from_file(
        self,
        path: str | os.PathLike[str],
        timeout: float | None = 15,
        dataset: Sequence[str] | str | None = None,
        dataset_exclude: Sequence[str] | str | None = None,
        dataset_separator: Sequence[str] | str | None = ".",
        *,
        metadata: bool = False,
    ) -> Any:
        """Infer the rows of a file: Arrow IPC (``.arrow``, ``.feather``, ``.ipc``) or Parquet
        (a pyarrow Table back), or JSON records (``.json``: a list of objects; ``.jsonl``: one
        per line; a list of dicts back). ``timeout`` and the ``dataset`` arguments are those
        of :meth:`infer`."""
        data = read_file(path)
        return self.infer(
            data, timeout, dataset, dataset_exclude, dataset_separator, metadata=metadata
        )

    def infer_table(
        self,
        rows: list[dict[str, Any]],
        *,
        timeout: float | None = 15,
        metadata: bool = False,
        concurrency: int = 1,
        dataset: Sequence[str] | str | None = None,
        dataset_exclude: Sequence[str] | str | None = None,
        dataset_separator: Sequence[str] | str | None = ".",
    ) -> pa.Table:
        """As :meth:`infer` for a list of rows, giving the records as a pyarrow Table whatever
        the input (what a server sends on, types intact)."""
        records, columns = self._records(
            rows,
            timeout=timeout,
            metadata=metadata,
            concurrency=concurrency,
            dataset=dataset,
            dataset_exclude=dataset_exclude,
            dataset_separator=dataset_separator,
        )
        table = records.table() if records is not None else pa.table({})
        if table.num_columns:
            table = table.select(columns)
        return shaped(table, dataset_separator)

    def _records(
        self,
        rows: list[dict[str, Any]],
        *,
        timeout: float | None = 15,
        metadata: bool = False,
        concurrency: int = 1,
        dataset: Sequence[str] | str | None = None,
        dataset_exclude: Sequence[str] | str | None = None,
        dataset_separator: Sequence[str] | str | None = ".",
    ) -> tuple[Records | None, list[str]]:
        """Run ``rows`` (logged — durably, unless ``durable_log`` is False — before this
        returns; the hooks called; raising for a failed row): the records of the rows and
        the columns the ``dataset`` arguments select."""
        timeout = 15 if timeout is None else timeout
        check_call(timeout, concurrency)
        separator_of(dataset_separator)  # refused before anything runs
        service = self._running()
        result = service.run(
            rows, timeout=float(timeout), concurrency=concurrency, durable=self.durable_log
        )
        if self.on_failure is not None and result.failures is not None:
            self.on_failure(result.failures)
        if self.on_record is not None and result.records is not None:
            self.on_record(result.records)
        first = result.first
        if first is not None:
            failed = result.failed.num_rows if result.failed is not None else 1
            prefix = f"pipeline {self.name!r} version {service.version.version}: "
            if first.step == INPUT_STEP:
                raise errors.ValidationError(
                    f"{prefix}input row {first.row} does not fit the pipeline's input schema: "
                    f"{first.message} ({failed} of {len(rows)} input(s) refused)",
                    field=f"data[{first.row}]",
                )
            step = service.runtime.definition.describe(self._catalog.name_of)
            where = step[first.step] if first.step < len(step) else f"{first.step}: {first.kind}"
            raise PipelineStepError(
                f"{prefix}step {where} failed for {failed} of {len(rows)} input(s): "
                f"{first.message}",
                step=first.step,
                failures=result.failures,
            )
        records = result.passed
        if metadata:  # as "metadata" added to the dataset
            chosen = [dataset] if isinstance(dataset, str) else list(dataset or ["*"])
            dataset = [*chosen, "metadata"]
        names = records.names if records is not None else []
        if not names:
            return records, []
        return records, columns_of(names, dataset, dataset_exclude, dataset_separator)

    def _infer(self, data: Any, *, concurrency: int, **options: Any) -> Any:
        rows, kind = rows_of(data)
        if kind in ("dict", "list") and options.get("dataset_separator", ".") == ".":
            # dicts straight from the columns: no Arrow table on the caller's thread
            records, columns = self._records(rows, concurrency=concurrency, **options)
            found = records.rows(columns) if records is not None else []
            return found[0] if kind == "dict" else found
        table = self.infer_table(rows, concurrency=concurrency, **options)
        return as_kind(table, kind)

    def _running(self) -> PipelineService:
        """The deployed version's pipeline, in this process."""
        service = self._live
        if service is not None and not service.closed:
            return service
        session = self.inference_session
        if session is None:
            raise errors.ConflictError(
                f"pipeline {self.name!r} is not deployed; call deploy() first"
            )
        handle = self._core.sessions.handles(session)[0]
        if not isinstance(handle.service, PipelineService):  # pragma: no cover - kind is fixed
            raise errors.PlatformError(f"InferenceSession {session} does not run a pipeline")
        self._live = handle.service
        return handle.service

    # -- internals -----------------------------------------------------------------------------

    def _start(self, version: PipelineVersion, replicas: int) -> None:
        from assay.schema.requests import InferenceSessionCreateRequest
        from assay.schema.status import Status

        service = self._version_service(version)
        previous = self._deployed_sessions()
        group = self._core.inferencesessions
        session = group._insert(
            group._build(
                InferenceSessionCreateRequest(
                    account=self.account, inferenceService=service.id, replicas=replicas
                )
            )
        )
        _add_labels(self._core, session.id, {PIPELINE_LABEL: self.name})
        doc = self._core.engine.drive(session.id)
        if doc.get("status") != Status.Ready:
            raise errors.UnavailableError(
                f"pipeline {self.name!r} version {version.version} did not start: "
                f"{doc.get('status')}{' (' + doc['reason'] + ')' if doc.get('reason') else ''}: "
                f"{doc.get('message', '')}"
            )
        self._live = None
        self._running()
        for old in previous:  # the new version answers now: stop the old one
            with contextlib.suppress(errors.AssayError):
                self._core.sessions.terminate(old["id"])

    def _version_service(self, version: PipelineVersion) -> Any:
        """The InferenceService of ``version`` (made on its first deploy, reused after)."""
        from assay.schema.base import validate_model
        from assay.schema.dataset import make_output_schema
        from assay.schema.requests import InferenceServiceCreateRequest

        id = uuid.uuid5(_SERVICE_NAMESPACE, version.id).hex
        existing = self._core.inferenceservices.get(id)
        if existing is not None:
            return existing
        definition = version.definition
        item = self._catalog.output_schema(definition)
        if item is not None:
            output = make_output_schema(item).model_dump(by_alias=True)
        else:  # unknown or not unifiable: the first answering service's schema
            first = next(s for s in definition.steps if isinstance(s, ANSWERING)).services()[0]
            output = self._core.inferenceservices.require(first).interface.outputSchema.model_dump(
                by_alias=True
            )
        request = {
            "account": self.account,
            "name": f"{self.name}-v{version.version}",
            "runner": {
                "kind": "pipeline",
                "configuration": {"pipeline": self.name, "version": version.version},
            },
            "interface": {"endpoint": "infer", "outputSchema": output},
        }
        group = self._core.inferenceservices
        entity = group._build(
            validate_model(InferenceServiceCreateRequest, request, what="pipeline service")
        ).model_copy(
            update={
                "id": id,
                "labels": {PIPELINE_LABEL: self.name, VERSION_LABEL: str(version.version)},
            }
        )
        try:
            return group._insert(entity)
        except errors.ConflictError:  # another process made it first
            return group.require(id)

    def __repr__(self) -> str:
        return f"Pipeline(name={self.name!r}, account={self.account!r}, steps={len(self._steps)})"

    def _repr_html_(self) -> str:
        """The pipeline as an HTML table (Jupyter): name, account, versions, the deployed
        version and the steps of the current definition, every value escaped."""
        deployed = self.deployed_version
        return html_table(
            ["name", "account", "versions", "deployed version", "steps"],
            [
                [
                    self.name,
                    self.account,
                    ", ".join(str(v.version) for v in self.versions()) or "none",
                    "not deployed" if deployed is None else str(deployed.version),
                    self.steps(),
                ]
            ],
        )


def _add_labels(core: Any, id: str, labels: Mapping[str, str]) -> None:
    def mutate(doc: dict[str, Any]) -> dict[str, Any]:
        doc["labels"] = {**(doc.get("labels") or {}), **labels}
        return doc

    core.store.update(id, mutate)
