"""``platform.pipelines``: a platform's pipelines, each connected to its inference log.

A pipeline made here logs every inference (``on_record``) and every failure (``on_failure``)
to an :class:`~assay.pipelines.log.InferenceLog` under
``<storage_root>/.assay/pipelines/<account>/<name>/``, which ``logs()``, ``export_logs()``,
``log_counters()`` and ``to_dataset()`` read back.
"""

from __future__ import annotations

import threading
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

from assay import errors
from assay.pipelines.log import ExportResult, InferenceLog
from assay.pipelines.pipeline import Pipeline
from assay.pipelines.versions import VersionStore

__all__ = ["LoggedPipeline", "MoreLogRecordsWarning", "Pipelines"]


class MoreLogRecordsWarning(UserWarning):
    """``logs()`` returned ``limit`` records and more exist."""


class LoggedPipeline(Pipeline):
    """A :class:`Pipeline` with its inference log."""

    def __init__(self, platform: Any, name: str, *, account: str | None, log: InferenceLog) -> None:
        super().__init__(
            platform, name, account=account, on_record=self._logged, on_failure=self._failed
        )
        self.log = log

    def _logged(self, table: Any) -> None:
        self.log.append(table)  # a full queue is counted (``dropped``) and warned about once

    def _failed(self, table: Any) -> None:
        # the pipeline names the failure error.message / error.step / error.step_kind; the
        # failure log keeps the message as ``error`` and the step under ``metadata.``
        renames = {
            "error.message": "error",
            "error.step": "metadata.error_step",
            "error.step_kind": "metadata.error_step_kind",
        }
        table = table.rename_columns([renames.get(n, n) for n in table.schema.names])
        self.log.append_failures(table)

    def logs(
        self,
        limit: int | None = 100,
        start_datetime: datetime | None = None,
        end_datetime: datetime | None = None,
        valid: bool | None = None,
        dataset: list[str] | str | None = None,
        dataset_exclude: list[str] | str | None = None,
        dataset_separator: str = ".",
        arrow: bool = False,
        failures: bool = False,
    ) -> Any:
        """Logged inferences: the newest ``limit`` (newest first), or, with a time range, the
        first ``limit`` of ``[start_datetime, end_datetime)`` in time order. ``valid`` keeps
        records without (True) or with (False) anomalies; ``dataset`` / ``dataset_exclude``
        choose column groups (``time``, ``in``, ``out``, ``anomaly``, ``metadata``...).
        A pandas DataFrame, or a pyarrow Table with ``arrow=True``; a
        :class:`MoreLogRecordsWarning` says when more records exist."""
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
        if more:
            warnings.warn(
                f"pipeline {self.name!r}: {table.num_rows} log records returned and more exist; "
                "raise limit, or give start_datetime / end_datetime",
                MoreLogRecordsWarning,
                stacklevel=2,
            )
        return table if arrow else table.to_pandas()

    def export_logs(
        self,
        directory: str | Path = "logs",
        file_prefix: str | None = None,
        data_size_limit: str | int = "100 MiB",
        arrow: bool = False,
        **filters: Any,
    ) -> ExportResult:
        """Write the log as JSON Lines (or Arrow files with ``arrow=True``) under
        ``directory``, a new file whenever the schema changes, stopping at
        ``data_size_limit``; the result says how far it got. ``filters`` are those of
        :meth:`logs` (time range, ``valid``, ``dataset``...)."""
        return self.log.export(
            directory=directory,
            file_prefix=file_prefix or self.name,
            data_size_limit=data_size_limit,
            arrow=arrow,
            **filters,
        )

    def log_counters(self) -> dict[str, int]:
        """Records ``written``, ``failed``, ``dropped`` (queue overflow), ``queued`` and the
        number of ``segments``, since this pipeline object was opened."""
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
        platform = self._platform
        window = Path(platform.storage_root) / ".assay" / "work" / f"pipeline-{self.name}"
        inputs, outputs = self.log.to_dataset_files(
            window, start_datetime, end_datetime, valid=valid
        )
        dataset = platform.datasets.create_arrow_dataset(
            inputs, account=self.account, name=name or f"{self.name} traffic"
        )
        dataset = platform.datasets.upload_arrow_dataset(dataset, inputs)
        evaluation = platform.evaluations.import_data(outputs)
        return dataset, evaluation


class Pipelines:
    """The pipelines of a platform (``platform.pipelines``)."""

    def __init__(self, platform: Any) -> None:
        self._platform = platform
        self._open: dict[tuple[str, str], LoggedPipeline] = {}
        self._lock = threading.Lock()

    def create(self, name: str, *, account: str | None = None) -> LoggedPipeline:
        """The pipeline ``name`` of ``account``: a new one, or the stored one (starting from
        its latest version) if it exists."""
        account = account or self._platform.account
        with self._lock:
            key = (account, name)
            if key not in self._open:
                directory = (
                    Path(self._platform.storage_root) / ".assay" / "pipelines" / account / name
                )
                log = InferenceLog(directory)
                try:
                    self._open[key] = LoggedPipeline(self._platform, name, account=account, log=log)
                except BaseException:
                    log.close()
                    raise
            return self._open[key]

    def get(self, name: str, *, account: str | None = None) -> LoggedPipeline:
        """The stored pipeline ``name``; NotFoundError if it was never deployed."""
        account = account or self._platform.account
        store = VersionStore(self._platform.core.store, pipeline=name, account=account)
        if not store.list():
            raise errors.NotFoundError(
                f"no pipeline {name!r} of account {account!r} was ever deployed; make one with "
                "platform.pipelines.create(name)",
                kind="Pipeline",
                id=name,
            )
        return self.create(name, account=account)

    def close(self) -> None:
        """Undeploy and close every pipeline opened here, flushing their logs."""
        with self._lock:
            opened, self._open = list(self._open.values()), {}
        for pipeline in opened:
            pipeline.undeploy()
            pipeline.log.close()
