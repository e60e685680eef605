"""The workflow log: timestamped lines a workflow writes about itself, kept with its artifacts.

Every workflow (an evaluation, a session, an analysis) may write lines that tell what it
chose and what happened (settings, concurrency changes, retries, replica starts and exits).
They are kept as JSON Lines in ``<entity>/.assay/logs/workflow.jsonl``, one object per line:
``{"timestamp": "<ISO 8601, UTC>", "message": "...", "labels": {"stream": "workflow", ...}}``
— the shape of a line of ``GET /R/{id}/logs/workflow`` — so reading them back needs no
parsing of free text. Writing appends one line and flushes it (no fsync: a log is evidence
of what happened, not a result; the results have their own durable writes).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from assay.storage import ArtifactStorage

__all__ = ["WORKFLOW_LOG", "WorkflowLog", "read_workflow_log"]

#: Where a workflow's own log is kept, among its entity's artifacts.
WORKFLOW_LOG = ".assay/logs/workflow.jsonl"
#: The longest message kept whole (longer ones are cut, saying so).
MAX_MESSAGE = 16_384


class WorkflowLog:
    """Appends lines to one entity's workflow log (thread-safe)."""

    def __init__(self, storage: ArtifactStorage, entity_id: str) -> None:
        self._storage = storage
        self._id = entity_id
        self._lock = threading.Lock()
        self._kept: list[str] = []  # storages with no local files: the whole log, rewritten

    def write(self, message: str, **labels: str) -> None:
        """Append ``message`` (stamped now; ``labels`` say where it comes from, ``stream``
        defaults to ``workflow``). A log that cannot be written is skipped silently: it must
        never fail the work it describes (a full disk is reported by the work's own writes)."""
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + f" [... {len(message) - MAX_MESSAGE:,} more characters]"
        line = json.dumps(
            {
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "message": message,
                "labels": {"stream": "workflow", **labels},
            },
            ensure_ascii=False,
        )
        with self._lock:
            try:
                local = self._storage.local_path(self._id, WORKFLOW_LOG)
                if local is not None:
                    local.parent.mkdir(parents=True, exist_ok=True)
                    with open(local, "a", encoding="utf-8") as handle:
                        handle.write(line + "\n")
                else:
                    self._kept.append(line)
                    data = ("\n".join(self._kept) + "\n").encode()
                    self._storage.put_bytes(self._id, WORKFLOW_LOG, data)
            except OSError:
                pass


def read_workflow_log(storage: ArtifactStorage, entity_id: str) -> list[dict[str, Any]]:
    """The lines of ``entity_id``'s workflow log, oldest first (none: an empty list). A line
    that is not a JSON object (a torn last line) is skipped."""
    from assay import errors

    try:
        data = storage.read_bytes(entity_id, WORKFLOW_LOG)
    except (errors.NotFoundError, OSError):
        return []
    lines: list[dict[str, Any]] = []
    for raw in data.decode("utf-8", "replace").splitlines():
        try:
            item = json.loads(raw)
        except ValueError:
            continue
        if isinstance(item, dict) and "message" in item:
            lines.append(item)
    return lines
