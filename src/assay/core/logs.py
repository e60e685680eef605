"""An entity's whole log: every source its workflow writes to, merged in time order.

=================  ==========================================================================
kind               sources (``labels``)
=================  ==========================================================================
every kind         the workflow log, ``.assay/logs/workflow.jsonl`` (``stream=workflow``)
InferenceSession   and each replica's output, ``.assay/logs/replica-{i}.log``
                   (``stream=replica, replica=i``)
Evaluation         and the workflow log and replica output of its own sessions (those it
                   started, labelled ``assay.io/evaluation``; each line with ``session=ID``)
Measurement,       and what the Method printed, ``.assay/logs.txt`` (while it runs
SafetyCase         ``.assay/work/logs.txt``) (``stream=method``)
=================  ==========================================================================

Workflow lines carry the time they were written; lines of plain-text files carry the time
their file was last written, and stay in file order (``docs/design/logs.md``).
:class:`WorkflowLogs` gives a group ``logs(id)`` (text) and ``log_lines(id)`` (the lines).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from assay.engine.logs import (
    LogLine,
    format_log,
    merge_logs,
    read_text_log,
    select_lines,
    workflow_log_lines,
)

if TYPE_CHECKING:
    from assay.core.platform import PlatformCore
    from assay.schema.platform import Entity

__all__ = ["REPLICA_LOGS", "WorkflowLogs", "read_entity_log"]

#: Where a session's replicas' output is kept, among its artifacts.
REPLICA_LOGS = ".assay/logs/"
_REPLICA_FILE = re.compile(r"^replica-(\d+)\.log$")


def read_entity_log(core: PlatformCore, entity: Entity) -> list[LogLine]:
    """Every line of ``entity``'s log (see the module doc), oldest first."""
    written = entity.lastTransitionTime or entity.creationTime or datetime.now(UTC)
    return merge_logs(*_sources(core, entity.id, entity.kind, written, {}))


def _sources(
    core: PlatformCore, id: str, kind: str, written: datetime, labels: dict[str, str]
) -> list[list[LogLine]]:
    """Each source of the log of entity ``id`` of ``kind``; ``written``: the time of lines
    whose file has no time of its own (a storage without local files)."""
    storage = core.storage
    sources = [workflow_log_lines(storage, id, **labels)]
    if kind == "InferenceSession":
        sources += _replica_logs(core, id, written, labels)
    elif kind == "Evaluation":
        sources += _own_sessions(core, id, written)
    elif kind in ("Measurement", "SafetyCase"):
        from assay.analysis.workflow import LOG_PATH, WORK_PATH

        method = {"stream": "method", **labels}
        path = LOG_PATH if storage.exists(id, LOG_PATH) else f"{WORK_PATH}/logs.txt"
        sources.append(read_text_log(storage, id, path, labels=method, written=written))
    return sources


def _replica_logs(
    core: PlatformCore, id: str, written: datetime, labels: dict[str, str]
) -> list[list[LogLine]]:
    found: list[tuple[int, str]] = []
    for info in core.storage.list(id, REPLICA_LOGS):
        match = _REPLICA_FILE.match(info.path[len(REPLICA_LOGS) :])
        if match:
            found.append((int(match.group(1)), info.path))
    return [
        read_text_log(
            core.storage,
            id,
            path,
            labels={"stream": "replica", "replica": str(index), **labels},
            written=written,
        )
        for index, path in sorted(found)
    ]


def _own_sessions(core: PlatformCore, evaluation_id: str, written: datetime) -> list[list[LogLine]]:
    """The logs of the sessions an evaluation started for itself (not of a session it was
    given: that one serves others too)."""
    from assay.evaluation.workflow import SESSION_LABEL

    sources: list[list[LogLine]] = []
    for doc in core.store.query(kind="InferenceSession", labels={SESSION_LABEL: evaluation_id}):
        session = str(doc["id"])
        sources += _sources(core, session, "InferenceSession", written, {"session": session})
    return sources


class WorkflowLogs:
    """``logs(id)`` and ``log_lines(id)`` for the groups of kinds whose workflows keep a log
    (evaluations, sessions, measurements, safety cases)."""

    kind: ClassVar[str]

    def log_lines(
        self, id: str, *, limit: int | None = None, since: str | datetime | None = None
    ) -> list[LogLine]:
        """The lines of the entity's log, oldest first: those written at or after ``since``
        (``'30m'``, ``'2h'``, ``'1d'``, an ISO 8601 time or a ``datetime``), the last
        ``limit`` of them (None: all)."""
        group: Any = self
        entity = group.require(id)
        lines = read_entity_log(group._core, entity)
        return select_lines(lines, limit=limit, since=since, what=f"{self.kind} {id}")

    def logs(
        self, id: str, *, limit: int | None = None, since: str | datetime | None = None
    ) -> str:
        """The entity's log as text, one ``2026-12-05T12:00:00Z [stream] message`` per line:
        what its workflow wrote, what its Method printed (a measurement, a safety case),
        what its replicas printed (a session, an evaluation's own session); so far, while it
        runs. ``limit`` and ``since`` as for :meth:`log_lines`."""
        return format_log(self.log_lines(id, limit=limit, since=since))
