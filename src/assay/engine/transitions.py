"""The status machine every entity follows (DESIGN §1).

```
Created ──► Admitted ──► Complete | Ready          (success)
   │           │    └──► Failed | Error            (failure, with reason and message)
   │           └───────► Terminated                (TerminateCommand, Expired)
   ├──► Failed | Error                              (FailedDependency)
   └──► Ready                                       (resources with nothing to run)
any ──► Deleted                                      (DeleteCommand)
Ready ──► Terminated | Error                         (a session ends or its replica dies)
Admitted ──► Admitted                                (progress messages; a restart)
```

A success status is only ever set by the engine after the workflow's outputs are durably
written; nothing leaves ``Deleted``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from assay import errors
from assay.schema.status import Status

__all__ = ["ALLOWED", "apply_transition", "check_transition", "utc_now"]

_S = Status
#: status → the statuses it may move to (a status may always keep itself, to change
#: its reason or message).
ALLOWED: dict[str, frozenset[str]] = {
    _S.Created: frozenset(
        {
            _S.Schedulable,
            _S.Admitted,
            _S.Ready,
            _S.Complete,
            _S.Failed,
            _S.Error,
            _S.Terminated,
            _S.Deleted,
        }
    ),
    _S.Schedulable: frozenset({_S.Admitted, _S.Failed, _S.Error, _S.Terminated, _S.Deleted}),
    _S.Admitted: frozenset({_S.Complete, _S.Ready, _S.Failed, _S.Error, _S.Terminated, _S.Deleted}),
    _S.Ready: frozenset({_S.Terminated, _S.Error, _S.Deleted}),
    _S.Complete: frozenset({_S.Deleted}),
    _S.Failed: frozenset({_S.Deleted}),
    _S.Error: frozenset({_S.Deleted}),
    _S.Terminated: frozenset({_S.Deleted}),
    _S.Denied: frozenset({_S.Deleted}),
    _S.Approved: frozenset({_S.Deleted}),
    _S.Deleted: frozenset(),
}


def utc_now() -> datetime:
    return datetime.now(UTC)


def check_transition(kind: str, id: str, current: str, new: str) -> None:
    """Raise :class:`assay.errors.ConflictError` if ``current → new`` is not allowed."""
    if new == current and current != _S.Deleted:
        return
    if new not in ALLOWED.get(current, frozenset()):
        allowed = sorted(ALLOWED.get(current, frozenset()))
        raise errors.ConflictError(
            f"{kind} {id!r} cannot move from status {current!r} to {new!r}"
            + (
                f" (from {current!r} it may move to {', '.join(allowed)})"
                if allowed
                else f" ({current!r} is final)"
            )
        )


def apply_transition(
    doc: dict[str, Any],
    status: str,
    *,
    reason: str | None = None,
    message: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Set ``status``/``reason``/``message`` on an entity document, checking the move and
    stamping ``lastTransitionTime`` when the status changes. Returns ``doc``."""
    current = doc.get("status", _S.Created)
    check_transition(doc.get("kind", "Entity"), doc.get("id", "?"), current, status)
    if status != current:
        doc["lastTransitionTime"] = (now or utc_now()).isoformat().replace("+00:00", "Z")
    doc["status"] = status
    for key, value in (("reason", reason), ("message", message)):
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc
