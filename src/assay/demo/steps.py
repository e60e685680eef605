"""How the demo makes its entities: each one once, found again by its labels at the next run,
with one line of progress per entity.

Every entity the demo makes carries two labels: :data:`STEP_LABEL` (which step made it, e.g.
``evaluation.logreg.clean``) and :data:`VERSION_LABEL` (the demo's version, see
:func:`assay.demo.version`). A later run looks each step up by both, in the demo's account and
in a success status (``Ready``, ``Complete``), and reuses what it finds; what a changed demo
made under another version, or what failed, is left alone and made anew.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any, TypeVar

from assay import errors
from assay.schema.status import is_status_success

__all__ = ["STEP_LABEL", "VERSION_LABEL", "Steps"]

#: The label that names the step that made an entity.
STEP_LABEL = "demo.assay.dev/step"
#: The label that names the demo version that made an entity.
VERSION_LABEL = "demo.assay.dev/version"

E = TypeVar("E")


class Steps:
    """Finds or makes the demo's entities in ``account``, and prints what it does."""

    def __init__(self, account: str, version: str, out: IO[str] | None = None) -> None:
        self.account = account
        self.version = version
        self.out = out
        self.started = time.perf_counter()
        self.created = 0
        self.reused = 0

    def say(self, message: str) -> None:
        """Print one line (flushed, so that progress shows as it happens)."""
        print(message, file=self.out or sys.stdout, flush=True)

    def heading(self, title: str) -> None:
        """Print the title of a stage, with the time since the start."""
        self.say(f"[{time.perf_counter() - self.started:5.1f} s] {title}")

    def find(self, group: Any, step: str) -> Any | None:
        """The entity of ``group`` that ``step`` made in an earlier run, if it succeeded."""
        found = group.query(
            account=self.account,
            labels={STEP_LABEL: step, VERSION_LABEL: self.version},
            status=["Ready", "Complete"],
            order="descending",
            limit=1,
        )
        return found[0] if found else None

    def ensure(
        self, group: Any, step: str, what: str, make: Callable[[], E], *, reuse: bool = True
    ) -> E:
        """The entity ``step`` made earlier, or (when there is none, or not ``reuse``) a new
        one from ``make()``: labelled, checked to have succeeded (else
        :class:`assay.errors.WorkflowFailedError` with its message), and reported on one line
        with ``what`` it is and how long it took."""
        started = time.perf_counter()
        existing = self.find(group, step) if reuse else None
        if existing is not None:
            self.reused += 1
            self._report(what, existing, "reused", started)
            result: E = existing
            return result
        entity: Any = make()
        if not is_status_success(entity.status):
            detail = f"{entity.status}" + (f" ({entity.reason})" if entity.reason else "")
            raise errors.WorkflowFailedError(
                f"demo step {step}: {entity.kind} {entity.id} ended {detail}: "
                f"{entity.message or 'no message'}",
                entity=entity,
            )
        entity = group.label(entity.id, {STEP_LABEL: step, VERSION_LABEL: self.version})
        self.created += 1
        self._report(what, entity, "made", started)
        made: E = entity
        return made

    def _report(self, what: str, entity: Any, outcome: str, started: float) -> None:
        seconds = time.perf_counter() - started
        message = f" ({entity.message})" if getattr(entity, "message", None) else ""
        self.say(f"  {outcome:<6} {seconds:5.1f} s  {what}: {entity.kind} {entity.id}{message}")
