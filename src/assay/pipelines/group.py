"""``platform.pipelines``: a platform's pipelines, each with its inference log.

A deployed pipeline logs every inference and every failure, wherever it is called, to the
:class:`~assay.pipelines.log.InferenceLog` under
``<storage_root>/.assay/pipelines/<account>/<name>/``; a pipeline from this group reads it
back with ``logs()``, ``export_logs()``, ``log_counters()`` and ``to_dataset()``.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from assay import errors
from assay.pipelines._html import html_table
from assay.pipelines.explain import ExplainabilityConfigs
from assay.pipelines.log import ExportResult, InferenceLog, release_shared
from assay.pipelines.pipeline import Pipeline
from assay.pipelines.runner import open_log
from assay.pipelines.versions import VersionStore

__all__ = ["LoggedPipeline", "MoreLogRecordsWarning", "PipelineList", "Pipelines", "deliver_logs"]


class MoreLogRecordsWarning(UserWarning):
    """``logs()`` returned ``limit`` records and more exist."""


class LoggedPipeline(ExplainabilityConfigs, Pipeline):
    """A :class:`Pipeline` with its inference log (and explainability configs over it:
    :mod:`assay.pipelines.explain`)."""

    def __init__(self, platform: Any, name: str, *, account: str | None, log: InferenceLog) -> None:
        super().__init__(platform, name, account=account)
        self.log = log

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
        """Logged inferences: the newest ``limit`` (newest first), or, with a time range, the
        first ``limit`` of ``[start_datetime, end_datetime)`` in time order. ``valid=True``
        keeps records without anomalies; ``valid=False`` those with anomalies and the failed
        inferences (with their ``error``). ``dataset`` chooses column groups: by default
        (``["*"]``) ``time``, ``in``, ``out``, ``check_failures`` (the ``anomaly.*`` columns)
        and, for failed inferences, ``error``; ``"metadata"`` only when asked for (e.g.
        ``["*", "metadata"]``); ``dataset_exclude`` leaves groups or columns out.
        ``dataset_separator``: ``"."`` flattened names (``in.text``), None nested columns
        (structs: ``in`` with a field ``text``). A pandas DataFrame (pandas must be
        installed), or a pyarrow Table with ``arrow=True``; a :class:`MoreLogRecordsWarning`
        says when more records exist. ``failures=True`` reads only the failure log."""
        if not arrow:
            _require_pandas()
        table, more = self.log.read(
            limit=limit,
            start_datetime=start_datetime,
            end_datetime=end_datetime,
            valid=valid,
            dataset=dataset,
            dataset_exclude=dataset_exclude,
            dataset_separator=dataset_separator,
            failures=failures,
        )
        return deliver_logs(self.name, table, more=more, arrow=arrow)

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
        """Write the log as JSON Lines (or Arrow files with ``arrow=True``) under
        ``directory``, in the order it was logged, a new file whenever the schema changes,
        stopping before the files in ``directory`` (those already there included) pass
        ``data_size_limit``, or after ``limit`` records. The selection is that of
        :meth:`logs`. The result says how far it got and, in ``resume`` (and its message),
        how to go on: ``export_logs(..., start_sequence=n)`` starts at the first record not
        exported, never skipping or repeating one (with ``valid=False``, also
        ``start_failure_sequence`` for the failure log)."""
        return self.log.export(
            directory=directory,
            file_prefix=file_prefix or self.name,
            data_size_limit=data_size_limit,
            arrow=arrow,
            start_datetime=start_datetime,
            end_datetime=end_datetime,
            valid=valid,
            dataset=dataset,
            dataset_exclude=dataset_exclude,
            dataset_separator=dataset_separator,
            limit=limit,
            failures=failures,
            start_sequence=start_sequence,
            start_failure_sequence=start_failure_sequence,
        )

    def log_counters(self) -> dict[str, int]:
        """What the log holds, written by any process: records ``written`` and ``failed``,
        their ``segments``, records ``dropped`` by any writer whose queue overflowed, and
        records ``queued`` in this process."""
        return self.log.counters()

    def to_dataset(
        self,
        start_datetime: datetime | None = None,
        end_datetime: datetime | None = None,
        *,
        name: str | None = None,
        valid: bool | None = None,
    ) -> tuple[Any, Any]:
        """A window of logged traffic as a Dataset (the inputs) and an Evaluation of it (the
        outputs), so that Methods can audit production traffic. Returns both entities."""
        import tempfile

        core = self._core
        self.log.flush()
        with tempfile.TemporaryDirectory(prefix=f"pipeline-{self.name}-") as window:
            inputs, outputs = self.log.to_dataset_files(
                Path(window), start_datetime, end_datetime, valid=valid
            )
            dataset = core.datasets.create_arrow_dataset(
                inputs, account=self.account, name=name or f"{self.name} traffic"
            )
            dataset = core.datasets.upload_arrow_dataset(dataset, inputs)
            evaluation = core.evaluations.import_data(outputs, account=self.account)
        return dataset, evaluation


class PipelineList(list[str]):
    """Pipeline names (``platform.pipelines.list()``), shown in Jupyter as an HTML table
    with each pipeline's versions and deployed version; ``rows`` are those summaries."""

    def __init__(self, names: Iterable[str] = (), rows: Iterable[dict[str, Any]] = ()) -> None:
        super().__init__(names)
        self.rows: list[dict[str, Any]] = list(rows)

    def _repr_html_(self) -> str:
        return html_table(
            ["name", "account", "versions", "deployed version", "first deployed", "last deployed"],
            [
                [
                    row["name"],
                    row["account"],
                    ", ".join(map(str, row["versions"])),
                    "not deployed" if row["deployed"] is None else row["deployed"],
                    row["created"],
                    row["updated"],
                ]
                for row in self.rows
            ],
        )


class Pipelines:
    """The pipelines of a platform (``platform.pipelines``)."""

    def __init__(self, platform: Any) -> None:
        self._platform = platform
        self._core: Any = getattr(platform, "core", platform)
        self._open: dict[tuple[str, str], LoggedPipeline] = {}
        self._lock = threading.Lock()

    def _account(self, account: str | None) -> str:
        found = account or getattr(self._platform, "account", None) or self._core.default_account
        if not found:
            raise errors.ValidationError("give the pipeline's account", field="account")
        return str(found)

    def create(self, name: str, *, account: str | None = None) -> LoggedPipeline:
        """The pipeline ``name`` of ``account``: a new one, or the stored one (starting from
        its latest version) if it exists."""
        account = self._account(account)
        with self._lock:
            key = (account, name)
            if key not in self._open:
                pipeline = Pipeline(self._platform, name, account=account)  # checks the name
                log = open_log(self._core, pipeline.account, name)
                try:
                    self._open[key] = LoggedPipeline(self._platform, name, account=account, log=log)
                except BaseException:
                    release_shared(log)
                    raise
            return self._open[key]

    def get(self, name: str, *, account: str | None = None) -> LoggedPipeline:
        """The stored pipeline ``name``; NotFoundError if it was never deployed."""
        account = self._account(account)
        store = VersionStore(self._core.store, pipeline=name, account=account)
        if not store.list():
            raise errors.NotFoundError(
                f"no pipeline {name!r} of account {account!r} was ever deployed; make one with "
                "platform.pipelines.create(name)",
                kind="Pipeline",
                id=name,
            )
        return self.create(name, account=account)

    def list(self, *, account: str | None = None) -> PipelineList:
        """The names of the pipelines of ``account`` that were ever deployed (a list that
        Jupyter shows as a table: versions, deployed version, first and latest deploy)."""
        from assay.pipelines.pipeline import PIPELINE_LABEL
        from assay.pipelines.versions import KIND
        from assay.schema.status import Status

        account = self._account(account)
        docs = self._core.store.query(kind=KIND, account=account)
        sessions = self._core.store.query(
            kind="InferenceSession",
            account=account,
            labels={PIPELINE_LABEL: None},
            status=Status.Ready,
        )
        deployed: dict[str, Any] = {}  # the newest Ready session's version wins
        for session in sorted(sessions, key=lambda d: str(d.get("creationTime", ""))):
            runner = (session.get("inferenceService") or {}).get("runner") or {}
            version = (runner.get("configuration") or {}).get("version")
            deployed[str((session.get("labels") or {}).get(PIPELINE_LABEL))] = version
        rows: dict[str, dict[str, Any]] = {}
        for doc in sorted(docs, key=lambda d: int(d.get("version", 0))):
            row = rows.setdefault(
                str(doc["name"]), {"account": account, "versions": [], "created": doc["created"]}
            )
            row["versions"].append(doc.get("version"))
            row["updated"] = doc["created"]
        names = sorted(rows)
        return PipelineList(
            names, [{"name": n, **rows[n], "deployed": deployed.get(n)} for n in names]
        )

    def close(self) -> None:
        """Let go of every pipeline opened here, flushing their logs (the deployed versions'
        sessions stop with the platform)."""
        with self._lock:
            opened, self._open = list(self._open.values()), {}
        for pipeline in opened:
            release_shared(pipeline.log)


def deliver_logs(name: str, table: Any, *, more: bool, arrow: bool) -> Any:
    """What ``logs()`` returns: ``table`` (arrow) or a DataFrame, with a
    :class:`MoreLogRecordsWarning` (to the caller of ``logs()``) when more records exist."""
    if more:
        warnings.warn(
            f"pipeline {name!r}: {table.num_rows} log records returned and more exist; raise "
            "limit, or give start_datetime / end_datetime",
            MoreLogRecordsWarning,
            stacklevel=3,
        )
    return table if arrow else table.to_pandas()


def _require_pandas() -> None:
    import importlib.util

    if importlib.util.find_spec("pandas") is None:
        raise errors.ValidationError(
            "logs() gives a pandas DataFrame by default, and pandas is not installed: "
            "pip install pandas, or call logs(arrow=True) for a pyarrow Table",
            field="arrow",
        )
