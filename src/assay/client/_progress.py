"""Progress of uploads and downloads: a callback of the user's, or a line of text on a
terminal.

``Client(progress=...)`` takes a callable that receives a :class:`TransferProgress` after
every chunk (and once at the start and end of each file), ``False`` for no progress, or None
(the default): a one-line text bar on standard error when it is a terminal, nothing
otherwise (no tqdm needed).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TextIO

__all__ = ["ProgressCallback", "TerminalProgress", "TransferProgress", "progress_reporter"]


@dataclass(frozen=True)
class TransferProgress:
    """Where one file's transfer stands."""

    direction: Literal["upload", "download"]
    """Which way the bytes go."""
    entity: str
    """The id of the entity the file belongs to."""
    path: str
    """The artifact's path inside the entity."""
    done: int
    """Bytes transferred so far."""
    total: int | None
    """The file's size in bytes, when known."""

    @property
    def finished(self) -> bool:
        """True once every byte is transferred."""
        return self.total is not None and self.done >= self.total


#: What ``Client(progress=...)`` calls.
ProgressCallback = Callable[[TransferProgress], None]


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class TerminalProgress:
    """A text progress bar on a terminal, redrawn at most every ``interval`` seconds:
    ``  upload part-0.parquet [##########..........] 1.2 MiB / 2.4 MiB``."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = 0.1) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._interval = interval
        self._last = 0.0

    def __call__(self, progress: TransferProgress) -> None:
        now = time.monotonic()
        if not progress.finished and progress.done and now - self._last < self._interval:
            return
        self._last = now
        width = 20
        if progress.total:
            filled = int(width * min(progress.done / progress.total, 1.0))
            bar = f"[{'#' * filled}{'.' * (width - filled)}] "
            amount = f"{_size(progress.done)} / {_size(progress.total)}"
        else:
            bar, amount = "", _size(progress.done)
        name = progress.path if len(progress.path) <= 40 else "..." + progress.path[-37:]
        line = f"\r  {progress.direction} {name} {bar}{amount}"
        self._stream.write(line + ("\n" if progress.finished else ""))
        self._stream.flush()


def progress_reporter(setting: ProgressCallback | bool | None) -> ProgressCallback | None:
    """The callback for ``Client(progress=setting)``: the user's, a terminal bar (None or
    True, when standard error is a terminal; True forces it), or none (False)."""
    if setting is False:
        return None
    if setting is None or setting is True:
        isatty = getattr(sys.stderr, "isatty", None)
        if setting is True or (callable(isatty) and isatty()):
            return TerminalProgress()
        return None
    return setting
