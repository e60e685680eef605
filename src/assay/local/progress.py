"""Progress bars for embedded ``create()``: a sign of life while the work runs in the caller.

With the default ``inline`` executor, ``LocalPlatform``'s ``create()`` returns when the work is
done, which may take minutes. :func:`install` hooks a :class:`ProgressBars` on the engine's
:attr:`~assay.engine.Engine.progress_listener`: every ``ctx.progress(...)`` of a workflow
updates that workflow's bar (``tqdm.auto``: a text bar in a terminal, a widget in Jupyter),
counted where the workflow reports ``done`` / ``total`` (an evaluation's instances), its message
as the bar's postfix where it does not. The bar is closed when the workflow ends.

Bars are shown when standard error is a terminal or the code runs in Jupyter;
``ASSAY_PROGRESS=0`` turns them off, ``ASSAY_PROGRESS=1`` forces them (e.g. into a log file).
A display must never fail the work: the engine ignores a listener's errors.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from assay.engine import Engine
    from assay.schema.platform import Entity

__all__ = ["PROGRESS_VARIABLE", "ProgressBars", "install", "progress_wanted"]

#: The environment variable that turns bars off (``0``) or forces them (``1``).
PROGRESS_VARIABLE = "ASSAY_PROGRESS"
_OFF = ("0", "false", "no", "off")
_ON = ("1", "true", "yes", "on")
#: The unit of the counts each kind reports.
_UNITS = {"Evaluation": " instances"}


def _in_jupyter() -> bool:
    """True inside a Jupyter kernel (where ``tqdm.auto`` draws a widget)."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if callable(get) else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def progress_wanted() -> bool:
    """Whether to show bars: :data:`PROGRESS_VARIABLE` if set, else when standard error is a
    terminal or the code runs in Jupyter."""
    value = os.environ.get(PROGRESS_VARIABLE, "").strip().lower()
    if value in _OFF:
        return False
    if value in _ON:
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(callable(isatty) and isatty()) or _in_jupyter()


class ProgressBars:
    """One bar per running workflow, made on its first progress report (when
    :func:`progress_wanted`), closed by :meth:`end` (thread-safe)."""

    def __init__(self) -> None:
        self._bars: dict[str, Any] = {}  # entity id → its tqdm bar, or None: no bar
        self._lock = threading.Lock()

    def __call__(self, entity: Entity, message: str, done: int | None, total: int | None) -> None:
        """The engine's progress listener."""
        with self._lock:
            if entity.id not in self._bars:
                wanted = progress_wanted()
                self._bars[entity.id] = self._bar(entity, done is not None) if wanted else None
            bar = self._bars[entity.id]
            if bar is None:
                return
            if done is None:
                bar.set_postfix_str(message, refresh=False)
                bar.update(0)  # redrawn at most every mininterval
                return
            if bar.bar_format is not None:  # counts at last: show them
                bar.bar_format = None
            if total is not None and bar.total != total:
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)

    @staticmethod
    def _bar(entity: Entity, counted: bool) -> Any:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        return tqdm(
            desc=f"{entity.kind} {entity.id[:8]}",
            # without counts: the time it has run and the workflow's message
            bar_format=None if counted else "{desc}: {elapsed}{postfix}",
            unit=_UNITS.get(entity.kind, " items"),
            file=sys.stderr,
            dynamic_ncols=True,
            leave=True,
        )

    def end(self, entity_id: str) -> None:
        """Close the bar of a workflow that ended (none: nothing to do)."""
        with self._lock:
            bar = self._bars.pop(entity_id, None)
        if bar is not None:
            bar.close()

    def close(self) -> None:
        """Close every bar still open."""
        with self._lock:
            bars, self._bars = list(self._bars.values()), {}
        for bar in bars:
            if bar is not None:
                bar.close()


def install(engine: Engine) -> ProgressBars:
    """Show progress bars for the workflows ``engine`` runs in this process: the listener, and
    a wrapper of ``engine.run`` that closes a workflow's bar when it ends."""
    bars = ProgressBars()
    engine.progress_listener = bars
    run = engine.run

    @functools.wraps(run)
    def run_and_close(job: Any, *args: Any, **kwargs: Any) -> None:
        try:
            run(job, *args, **kwargs)
        finally:
            bars.end(job.entity_id)

    engine.run = run_and_close  # type: ignore[method-assign]
    engine.executor.bind(engine)  # it calls engine.run as bound when the engine was made
    return bars
