"""The workflow log: timestamped lines a workflow writes about itself, kept with its artifacts.

Every workflow (an evaluation, a session, an analysis) may write lines that tell what it
chose and what happened (settings, concurrency changes, retries, replica starts and exits).
They are kept as JSON Lines in ``<entity>/.assay/logs/workflow.jsonl``, one object per line:
``{"timestamp": "<ISO 8601, UTC>", "message": "...", "labels": {"stream": "workflow", ...}}``
— the shape of a line of ``GET /R/{id}/logs/workflow`` — so reading them back needs no
parsing of free text. Writing appends one line and flushes it (no fsync: a log is evidence
of what happened, not a result; the results have their own durable writes).

Reading: :class:`LogLine` is one line of any log; :func:`workflow_log_lines` and
:func:`read_text_log` (a plain-text file: a replica's output, a Method's) read one source,
:func:`merge_logs` puts sources in time order, :func:`select_lines` applies ``limit`` and
``since``, :func:`format_log` makes text of them. An entity's whole log (which sources each
kind has) is :func:`assay.core.logs.read_entity_log`; ``docs/design/logs.md`` says why it is
read this way.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from assay.storage import ArtifactStorage

__all__ = [
    "MAX_TEXT_BYTES",
    "WORKFLOW_LOG",
    "LogLine",
    "WorkflowLog",
    "format_log",
    "merge_logs",
    "parse_since",
    "read_text_log",
    "read_workflow_log",
    "select_lines",
    "workflow_log_lines",
]

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
            message = (
                message[:MAX_MESSAGE] + f" [... {len(message) - MAX_MESSAGE:,} more characters]"
            )
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


# -- reading ------------------------------------------------------------------------------------

#: How much of a plain-text log (a replica's output, a Method's) is read: its last bytes;
#: the lines before them are counted and announced by one line, not returned.
MAX_TEXT_BYTES = 8 * 1024 * 1024
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of an entity's log: when it was written, the line, and where it comes from."""

    timestamp: datetime
    """When the line was written (UTC). Lines of plain-text logs, which have no time of
    their own, carry the time their file was last written."""
    message: str
    """The line, without its line break."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Where the line comes from: ``stream`` (``workflow``, ``method`` or ``replica``), and
    ``replica`` (its number) for a replica's output, ``session`` for the lines of an
    evaluation's own session."""

    @property
    def stream(self) -> str:
        """The line's ``stream`` label (``workflow`` when it has none)."""
        return self.labels.get("stream", "workflow")

    def format(self) -> str:
        """The line as text: ``2026-12-05T12:00:00Z [stream] message`` (``[replica 0]`` for
        replica 0's output)."""
        source = self.stream
        if "replica" in self.labels:
            source = f"{source} {self.labels['replica']}"
        return f"{self.timestamp.strftime('%Y-%m-%dT%H:%M:%SZ')} [{source}] {self.message}"

    def to_wire(self) -> dict[str, Any]:
        """The line as ``GET /R/{id}/logs/workflow`` gives it."""
        return {
            "timestamp": _iso(self.timestamp),
            "message": self.message,
            "labels": dict(self.labels),
        }

    @classmethod
    def from_wire(cls, item: Mapping[str, Any]) -> LogLine:
        """A line from its JSON form (a line of a workflow log, of the route's answer); a time
        that cannot be read is the epoch, so that the line is kept rather than lost."""
        try:
            moment = datetime.fromisoformat(str(item.get("timestamp", "")))
        except ValueError:
            moment = datetime.fromtimestamp(0, UTC)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        labels = item.get("labels")
        return cls(
            timestamp=moment.astimezone(UTC),
            message=str(item.get("message", "")),
            labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def workflow_log_lines(storage: ArtifactStorage, entity_id: str, **labels: str) -> list[LogLine]:
    """The lines of ``entity_id``'s workflow log as :class:`LogLine`, oldest first, each with
    ``labels`` added to its own."""
    lines = [LogLine.from_wire(item) for item in read_workflow_log(storage, entity_id)]
    if labels:
        lines = [LogLine(ln.timestamp, ln.message, {**ln.labels, **labels}) for ln in lines]
    return lines


def read_text_log(
    storage: ArtifactStorage,
    entity_id: str,
    path: str,
    *,
    labels: Mapping[str, str],
    written: datetime,
) -> list[LogLine]:
    """The lines of the plain-text artifact ``path`` of ``entity_id`` (none: an empty list),
    in file order, each with ``labels``. A text file has no time per line: each carries the
    time the file was last written (its mtime where the storage has local files, else
    ``written``). Past :data:`MAX_TEXT_BYTES` only the file's last lines are read, after one
    line saying how many came before."""
    from assay import errors

    local = storage.local_path(entity_id, path)
    skipped = 0
    try:
        if local is not None:
            stat = local.stat()
            written = datetime.fromtimestamp(stat.st_mtime, UTC)
            with open(local, "rb") as handle:
                if stat.st_size > MAX_TEXT_BYTES:
                    skipped = _count_lines(handle, stat.st_size - MAX_TEXT_BYTES)
                data = handle.read(MAX_TEXT_BYTES)
        else:
            data = storage.read_bytes(entity_id, path)
            if len(data) > MAX_TEXT_BYTES:
                skipped = data.count(b"\n", 0, len(data) - MAX_TEXT_BYTES)
                data = data[len(data) - MAX_TEXT_BYTES :]
    except (errors.NotFoundError, OSError):  # not written (yet), or gone meanwhile
        return []
    if skipped:
        data = data.partition(b"\n")[2]  # the first line is cut: counted with the skipped
        skipped += 1
    text = data.decode("utf-8", "replace")
    lines = [LogLine(written, line.rstrip("\r"), dict(labels)) for line in text.split("\n")]
    if lines and not lines[-1].message:
        lines.pop()  # the file ends with a line break
    if skipped:
        name = path.rsplit("/", 1)[-1]
        notice = f"[... {skipped:,} earlier lines of {name} are not shown]"
        lines.insert(0, LogLine(written, notice, dict(labels)))
    return lines


def _count_lines(handle: Any, size: int) -> int:
    """The line breaks in the first ``size`` bytes of ``handle`` (left positioned there)."""
    count = 0
    left = size
    while left > 0:
        chunk = handle.read(min(left, 1 << 20))
        if not chunk:
            break
        count += chunk.count(b"\n")
        left -= len(chunk)
    return count


def merge_logs(*sources: Iterable[LogLine]) -> list[LogLine]:
    """The lines of every source in time order. The sort is stable: lines with the same time
    keep their sources' order, so the lines of a text file (which all carry its time) stay
    in file order after the workflow lines written before the file was last written."""
    merged = [line for source in sources for line in source]
    merged.sort(key=lambda line: line.timestamp)
    return merged


def parse_since(since: str | datetime, now: datetime | None = None, *, what: str = "") -> datetime:
    """The time ``since`` names: a duration before ``now`` (``90s``, ``15m``, ``2h``, ``1d``)
    or an ISO 8601 time (UTC unless it says otherwise). ``what`` (e.g. ``Evaluation abc``)
    begins the message of the :class:`~assay.errors.ValidationError` for anything else."""
    from assay import errors

    if isinstance(since, datetime):
        return since if since.tzinfo else since.replace(tzinfo=UTC)
    text = str(since).strip()
    match = _DURATION.match(text)
    if match:
        now = now or datetime.now(UTC)
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        prefix = f"{what}: " if what else ""
        raise errors.ValidationError(
            f"{prefix}since {since!r} is neither a duration (e.g. '30s', '15m', '2h', '1d') nor "
            "an ISO 8601 time (e.g. '2026-12-05T12:00:00Z'); give one of those",
            field="since",
            value=since,
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def select_lines(
    lines: Sequence[LogLine],
    *,
    limit: int | None = None,
    since: str | datetime | None = None,
    what: str = "",
) -> list[LogLine]:
    """The lines written at or after ``since`` (see :func:`parse_since`), the last ``limit``
    of them (None: all)."""
    from assay import errors

    chosen = list(lines)
    if since is not None:
        moment = parse_since(since, what=what)
        chosen = [line for line in chosen if line.timestamp >= moment]
    if limit is not None:
        if limit < 1:
            prefix = f"{what}: " if what else ""
            raise errors.ValidationError(
                f"{prefix}limit {limit} is not a positive number of lines; give 1 or more, or "
                "None for every line",
                field="limit",
                value=limit,
            )
        chosen = chosen[-limit:]
    return chosen


def format_log(lines: Iterable[LogLine]) -> str:
    """The lines as text, one :meth:`LogLine.format` per line, each ending with a line
    break (no lines: the empty string)."""
    return "".join(line.format() + "\n" for line in lines)
