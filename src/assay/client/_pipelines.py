"""``Client.pipelines``: serving pipelines on the server, with the methods of
``LocalPlatform.pipelines`` (:mod:`assay.pipelines.group`). Steps are built and checked here
(:class:`~assay.pipelines.builder.PipelineBuilder`, with the Client as the services source),
deployed and run on the server. Routes: ``docs/design/pipelines.md``."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay import errors
from assay.pipelines._log_read import separator_of
from assay.pipelines.builder import PipelineBuilder, check_name
from assay.pipelines.definition import PipelineDefinition
from assay.pipelines.inputs import check_call

if TYPE_CHECKING:
    import httpx
    import pyarrow as pa

    from assay.client._client import Client
    from assay.pipelines.log import ExportResult
    from assay.pipelines.versions import PipelineVersion

__all__ = ["Pipelines", "RemotePipeline"]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _filter_params(
    *,
    start_datetime: datetime | None = None,
    end_datetime: datetime | None = None,
    valid: bool | None = None,
    dataset: Sequence[str] | str | None = None,
    dataset_exclude: Sequence[str] | str | None = None,
    dataset_separator: Sequence[str] | str | None = ".",
    failures: bool = False,
) -> list[tuple[str, str]]:
    """The query parameters of the log routes' record selection (``log_filters`` on the
    server); ``dataset_separator=None`` (nested columns) is ``nested=true``."""
    params: list[tuple[str, str]] = []
    for key, value in (("start", start_datetime), ("end", end_datetime)):
        if value is not None:
            if not isinstance(value, datetime):
                raise errors.ValidationError(
                    f"{key}_datetime must be a datetime, got {value!r}",
                    field=f"{key}_datetime",
                    value=value,
                )
            params.append((key, value.isoformat()))
    if valid is not None:
        params.append(("valid", "true" if valid else "false"))
    for key, groups in (("dataset", dataset), ("datasetExclude", dataset_exclude)):
        if groups is not None:
            params.extend((key, g) for g in ([groups] if isinstance(groups, str) else groups))
    separator = separator_of(dataset_separator)  # refused here as locally ("" is no separator)
    params.append(("nested", "true") if separator is None else ("separator", separator))
    if failures:
        params.append(("failures", "true"))
    return params


def _read_table(data: bytes) -> pa.Table:
    import pyarrow as pa

    return pa.ipc.open_stream(pa.BufferReader(data)).read_all()


class _Body:
    """A streamed response body as a file, for reading Arrow IPC streams as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.iter_bytes()
        self._buffer = b""
        self._done = False
        self._position = 0
        self.closed = False

    def _fill(self, size: int) -> None:
        while not self._done and len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                self._done = True

    def at_end(self) -> bool:
        self._fill(1)
        return not self._buffer

    def read(self, size: int = -1) -> bytes:
        self._fill(size if size >= 0 else 1 << 62)
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        self._position += len(data)
        return data

    def tell(self) -> int:
        return self._position

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def _stream_tables(response: httpx.Response) -> Iterator[pa.Table]:
    """The Arrow IPC streams of ``response``'s body, back to back, one table each."""
    import pyarrow as pa

    body = _Body(response)
    while not body.at_end():
        yield pa.ipc.open_stream(pa.PythonFile(body, mode="r")).read_all()


class RemotePipeline(PipelineBuilder):
    """A pipeline on the server: build it here (each step checked against the server's
    services), ``deploy()`` it there, and infer, read its log and make datasets of its
    traffic through the API. The methods of ``LocalPlatform.pipelines``' pipelines."""

    def __init__(
        self,
        client: Client,
        name: str,
        *,
        account: str,
        definition: PipelineDefinition | None = None,
    ) -> None:
        super().__init__(client, name, definition or PipelineDefinition())
        self._client = client
        self._transport = client._transport
        self.account = account

    def _path(self, *rest: str) -> str:
        from urllib.parse import quote

        return "/".join(("/pipelines", quote(self.name, safe=""), *rest))

    def _params(self, *extra: tuple[str, str]) -> list[tuple[str, str]]:
        return [("account", self.account), *extra]

    def _json(self, method: str, *rest: str, **kwargs: Any) -> Any:
        return self._transport.json(
            method,
            self._path(*rest),
            params=self._params(),
            kind="Pipeline",
            id=self.name,
            **kwargs,
        )

    def _summary(self) -> dict[str, Any] | None:
        try:
            summary: dict[str, Any] = self._json("GET")
        except errors.NotFoundError:
            return None
        return summary

    # -- versions ----------------------------------------------------------------------------

    def deploy(self, replicas: int = 1, *, version: int | None = None) -> PipelineVersion:
        """Store the current definition on the server as a new immutable version and start
        it (``replicas`` replicas of every step's service); with ``version``, start that
        stored version again and make its definition the current one."""
        from assay.pipelines.versions import PipelineVersion

        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise errors.ValidationError(
                f"replicas must be an integer of at least 1, got {replicas!r}",
                field="replicas",
                value=replicas,
            )
        body: dict[str, Any] = {"replicas": replicas}
        if version is not None:
            body["version"] = version
        else:
            body["definition"] = self.definition.model_dump(mode="json", by_alias=True)
        chosen = PipelineVersion.model_validate(self._json("POST", "deploy", json=body))
        self._steps = list(chosen.definition.steps)
        self._input_schema = chosen.definition.inputSchema
        return chosen

    def undeploy(self) -> None:
        """Stop the deployed version on the server; its records stay."""
        self._json("POST", "undeploy")

    def versions(self) -> list[PipelineVersion]:
        """Every stored version, oldest first."""
        from assay.pipelines.versions import PipelineVersion

        try:
            found = self._json("GET", "versions")
        except errors.NotFoundError:
            return []
        return [PipelineVersion.model_validate(v) for v in found]

    def get_pipeline_configuration(self, version: str | int) -> dict[str, Any]:
        """The configuration of version ``version`` (its number, as an int or a str like
        ``"2"``, or its id) on the server, as ``LoggedPipeline.get_pipeline_configuration``
        gives it."""
        wanted = str(version).strip()
        for stored in self.versions():
            if wanted in (str(stored.version), stored.id):
                found: dict[str, Any] = stored.model_dump(mode="json", by_alias=True)
                return found
        raise errors.NotFoundError(
            f"pipeline {self.name!r} has no version {version!r}; its versions are "
            f"{[v.version for v in self.versions()]}",
            kind="PipelineVersion",
        )

    @property
    def deployed_version(self) -> PipelineVersion | None:
        """The version running now on the server (None: not deployed)."""
        summary = self._summary()
        number = summary.get("deployedVersion") if summary else None
        if number is None:
            return None
        return next((v for v in self.versions() if v.version == number), None)

    @property
    def inference_service(self) -> Any:
        """The InferenceService of the deployed version, or None when not deployed."""
        summary = self._summary()
        id = summary.get("inferenceService") if summary else None
        return self._client.inferenceservices.require(id) if id else None

    @property
    def inference_session(self) -> str | None:
        """The id of the deployed version's InferenceSession (None: not deployed)."""
        summary = self._summary()
        id = summary.get("inferenceSession") if summary else None
        return str(id) if id else None

    # -- inference ---------------------------------------------------------------------------

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
        row each) through the deployed version on the server; the records come back as the
        same kind. ``timeout`` and the ``dataset`` arguments are those of ``Pipeline.infer``
        (``dataset_separator=None``: nested columns). A failing step raises
        ``PipelineStepError`` with the server's message."""
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
        """As :meth:`infer`, with up to ``concurrency`` rows in flight at once (on the
        server)."""
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
        """Infer the rows of a file (Arrow IPC, Parquet, JSON or JSON Lines), as
        ``Pipeline.infer_from_file``; ``timeout`` and the ``dataset`` arguments are those of
        :meth:`infer`."""
        from assay.pipelines.inputs import read_file

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
        """As :meth:`infer` for a list of rows, giving the records as a pyarrow Table."""
        from assay.pipelines.inputs import rows_of

        checked, _ = rows_of(rows)
        return self._records(
            checked,
            timeout=timeout,
            metadata=metadata,
            concurrency=concurrency,
            dataset=dataset,
            dataset_exclude=dataset_exclude,
            dataset_separator=dataset_separator,
        )

    def _infer(self, data: Any, *, concurrency: int, **options: Any) -> Any:
        from assay.pipelines.inputs import as_kind, rows_of

        rows, kind = rows_of(data)
        table = self._records(rows, concurrency=concurrency, **options)
        return as_kind(table, kind)

    def _records(
        self,
        rows: list[dict[str, Any]],
        *,
        timeout: float | None,
        metadata: bool,
        concurrency: int,
        dataset: Sequence[str] | str | None,
        dataset_exclude: Sequence[str] | str | None,
        dataset_separator: Sequence[str] | str | None,
    ) -> pa.Table:
        import json

        from assay.pipelines._log_export import json_default

        timeout = 15 if timeout is None else timeout  # the document's Optional: the default
        check_call(timeout, concurrency)
        separator = separator_of(dataset_separator)  # refused before anything runs
        body: dict[str, Any] = {
            "rows": rows,
            "timeout": timeout,
            "metadata": metadata,
            "concurrency": concurrency,
        }
        # the selection only when given, so that a server from before it still answers
        for key, names in (("dataset", dataset), ("datasetExclude", dataset_exclude)):
            if names is not None:
                body[key] = [names] if isinstance(names, str) else list(names)
        if separator != ".":
            body["separator"] = separator  # None (JSON null): nested columns
        # values JSON does not have (times, bytes from a Table or DataFrame) as in exports
        content = json.dumps(body, default=json_default, ensure_ascii=False).encode()
        response = self._transport.send(
            "POST",
            self._path("infer"),
            params=self._params(),
            content=content,
            headers={"Content-Type": "application/json"},
            kind="Pipeline",
            id=self.name,
            timeout=float(timeout) + self._read_timeout(),
        )
        return _read_table(response.content)

    def _read_timeout(self) -> float:
        read = self._transport._http.timeout.read
        return float(read) if read is not None else 30.0

    # -- the inference log --------------------------------------------------------------------

    def logs(
        self,
        limit: int | None = 100,
        start_datetime: datetime | None = None,
        end_datetime: datetime | None = None,
        valid: bool | None = None,
        dataset: list[str] | str | None = None,
        dataset_exclude: list[str] | str | None = None,
        dataset_separator: Sequence[str] | str | None = ".",
        arrow: bool = False,
        failures: bool = False,
    ) -> Any:
        """Logged inferences, as ``LoggedPipeline.logs``: the newest ``limit`` (newest
        first), or with a time range the first ``limit`` of ``[start, end)``; ``limit=None``:
        all. ``valid``, ``dataset``, ``dataset_exclude`` and ``dataset_separator`` (None:
        nested columns) select as there. A pandas DataFrame, or a pyarrow Table with
        ``arrow=True``; a ``MoreLogRecordsWarning`` says when more records exist."""
        from assay.pipelines.group import _require_pandas, deliver_logs

        if not arrow:
            _require_pandas()
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise errors.ValidationError(
                f"inference log: limit must be a non-negative int or None, got {limit!r}",
                field="limit",
            )
        params = self._params(("all", "true") if limit is None else ("limit", str(limit)))
        params += _filter_params(
            start_datetime=start_datetime,
            end_datetime=end_datetime,
            valid=valid,
            dataset=dataset,
            dataset_exclude=dataset_exclude,
            dataset_separator=dataset_separator,
            failures=failures,
        )
        response = self._transport.send(
            "GET", self._path("logs"), params=params, kind="Pipeline", id=self.name
        )
        more = response.headers.get("X-Assay-More-Records") == "true"
        return deliver_logs(self.name, _read_table(response.content), more=more, arrow=arrow)

    def export_logs(
        self,
        directory: str | Path = "logs",
        file_prefix: str | None = None,
        data_size_limit: str | int = "100 MiB",
        limit: int | None = None,
        start_datetime: datetime | None = None,
        end_datetime: datetime | None = None,
        valid: bool | None = None,
        dataset: list[str] | str | None = None,
        dataset_exclude: list[str] | str | None = None,
        dataset_separator: Sequence[str] | str | None = ".",
        arrow: bool = False,
        *,
        failures: bool = False,
        start_sequence: int | None = None,
        start_failure_sequence: int | None = None,
    ) -> ExportResult:
        """Write the log here, as ``LoggedPipeline.export_logs`` does (the same files: JSON
        Lines, or Arrow files with ``arrow=True``, a new file whenever the schema changes,
        stopping before the files in ``directory`` — those already there included — pass
        ``data_size_limit``, or after ``limit`` records; the selection of :meth:`logs`); the
        records are streamed from the server. The result's ``resume`` goes on where it
        stopped: ``export_logs(..., **result.resume)`` (``start_sequence`` and, with
        ``valid=False``, ``start_failure_sequence``)."""
        from assay.pipelines._log_export import parse_size, write_tables

        size = parse_size(data_size_limit)
        start: dict[str, int] = {}
        for key, value in (
            ("start_sequence", start_sequence),
            ("start_failure_sequence", start_failure_sequence),
        ):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):  # as InferenceLog does
                raise errors.ValidationError(
                    f"inference log: {key} must be a sequence number (an int, from an "
                    f"export's resume), got {value!r}",
                    field=key,
                )
            start[key] = value
        params = self._params() + _filter_params(
            start_datetime=start_datetime,
            end_datetime=end_datetime,
            valid=valid,
            dataset=dataset,
            dataset_exclude=dataset_exclude,
            dataset_separator=dataset_separator,
            failures=failures,
        )
        if limit is not None:
            params.append(("limit", str(limit)))
        for key, name in (
            ("start_sequence", "startSequence"),
            ("start_failure_sequence", "startFailureSequence"),
        ):
            if key in start:
                params.append((name, str(start[key])))
        response = self._transport.send(
            "GET",
            self._path("logs", "export"),
            params=params,
            kind="Pipeline",
            id=self.name,
            stream=True,
        )
        try:
            return write_tables(
                _stream_tables(response),
                Path(directory),
                prefix=file_prefix or self.name,
                size_limit=size,
                arrow=arrow,
                limit=limit,
                start=start,  # as a local export: the resume it started from
            )
        finally:
            response.close()

    def log_counters(self) -> dict[str, int]:
        """The counters of this pipeline's log on the server, as ``LoggedPipeline.log_counters``
        (``written``, ``failed``, ``segments``, ``dropped`` by any writer; ``queued`` in the
        server's process)."""
        counters: dict[str, int] = self._json("GET", "log-counters")
        return counters

    def to_dataset(
        self,
        start_datetime: datetime | None = None,
        end_datetime: datetime | None = None,
        *,
        name: str | None = None,
        valid: bool | None = None,
    ) -> tuple[Any, Any]:
        """A window of logged traffic as a Dataset (the inputs) and an Evaluation of it (the
        outputs), made on the server; returns both once the server has finished them (Ready,
        Complete), as ``LoggedPipeline.to_dataset`` does."""
        from assay.client._groups import parse_answer
        from assay.schema.platform import entity_class

        body = {
            "start": _iso(start_datetime),
            "end": _iso(end_datetime),
            "name": name,
            "valid": valid,
        }
        made = self._json("POST", "datasets", json=body)
        dataset = parse_answer(entity_class("Dataset"), made["dataset"], "Dataset")
        evaluation = parse_answer(entity_class("Evaluation"), made["evaluation"], "Evaluation")
        # the server answers before its workers have ingested them; locally they are done
        dataset = self._client.datasets.wait(dataset.id)
        evaluation = self._client.evaluations.wait(evaluation.id)
        return dataset, evaluation

    def __repr__(self) -> str:
        return (
            f"RemotePipeline(name={self.name!r}, account={self.account!r}, "
            f"steps={len(self._steps)})"
        )


class Pipelines:
    """The pipelines on the server (``client.pipelines``), as ``LocalPlatform.pipelines``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def _account(self, account: str | None) -> str:
        return account or self._client.account

    def _fetch(self, name: str, account: str) -> dict[str, Any]:
        from urllib.parse import quote

        found: dict[str, Any] = self._client._transport.json(
            "GET",
            f"/pipelines/{quote(name, safe='')}",
            params=[("account", account)],
            kind="Pipeline",
            id=name,
        )
        return found

    def create(self, name: str, *, account: str | None = None) -> RemotePipeline:
        """The pipeline ``name`` of ``account`` (default: the token's): a new one, or the
        stored one (starting from its latest version) if it exists."""
        check_name(name)
        account = self._account(account)
        try:
            found = self._fetch(name, account)
        except errors.NotFoundError:
            return RemotePipeline(self._client, name, account=account)
        return self._open(found)

    def get(self, name: str, *, account: str | None = None) -> RemotePipeline:
        """The stored pipeline ``name``; NotFoundError if it was never deployed."""
        check_name(name)
        return self._open(self._fetch(name, self._account(account)))

    def list(self, *, account: str | None = None) -> list[str]:
        """The names of the pipelines of ``account`` that were ever deployed."""
        found = self._client._transport.json(
            "GET", "/pipelines", params=[("account", self._account(account))]
        )
        return sorted(str(summary["name"]) for summary in found)

    def close(self) -> None:
        """Nothing to let go: the pipelines and their logs live on the server."""

    def _open(self, found: dict[str, Any]) -> RemotePipeline:
        definition = PipelineDefinition.model_validate(found["definition"])
        return RemotePipeline(
            self._client, str(found["name"]), account=str(found["account"]), definition=definition
        )
