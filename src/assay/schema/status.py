"""Entity statuses and reasons, and the predicates over them.

A workflow entity moves ``Created`` → ``Admitted`` → a terminal status. Success statuses are
only set once the outputs are durably written (see ``docs/design/workflows.md``).
"""

from __future__ import annotations

from typing import ClassVar, Final

from assay.schema.base import SchemaModel

__all__ = [
    "FAILURE_STATUSES",
    "SUCCESS_STATUSES",
    "TERMINAL_STATUSES",
    "Reason",
    "Status",
    "is_status_failure",
    "is_status_success",
    "is_status_terminal",
]


class Status(SchemaModel):
    """The status of an entity, and the status values.

    Both things the reference calls ``Status``: a model with the ``status``, ``reason`` and
    ``message`` fields (the fields every entity has, e.g. ``Status(status="Complete")``), and
    the values of ``status`` as class constants (``Status.Complete == "Complete"``;
    :attr:`ALL` lists them).
    """

    status: str
    """Top-level status, assigned by the platform (one of :attr:`ALL`)."""
    reason: str | None = None
    """Why the entity has its status, assigned by the platform (see :class:`Reason`)."""
    message: str | None = None
    """What happened, in words, and what to do about it."""

    Created: ClassVar[str] = "Created"
    Schedulable: ClassVar[str] = "Schedulable"
    Admitted: ClassVar[str] = "Admitted"
    Terminated: ClassVar[str] = "Terminated"
    Deleted: ClassVar[str] = "Deleted"
    Ready: ClassVar[str] = "Ready"
    Complete: ClassVar[str] = "Complete"
    Error: ClassVar[str] = "Error"
    Failed: ClassVar[str] = "Failed"
    Denied: ClassVar[str] = "Denied"
    Approved: ClassVar[str] = "Approved"

    ALL: ClassVar[tuple[str, ...]] = (
        "Created",
        "Schedulable",
        "Admitted",
        "Terminated",
        "Deleted",
        "Ready",
        "Complete",
        "Error",
        "Failed",
        "Denied",
        "Approved",
    )


class Reason:
    """The reason values (the ``reason`` field): why an entity has its status."""

    # common to every kind
    QuotaLimit: Final = "QuotaLimit"
    UnsatisfiedDependency: Final = "UnsatisfiedDependency"
    FailedDependency: Final = "FailedDependency"
    TerminateCommand: Final = "TerminateCommand"
    DeleteCommand: Final = "DeleteCommand"
    Expired: Final = "Expired"
    Interrupted: Final = "Interrupted"
    # uploads (Dataset, Module, Model)
    WaitingForUpload: Final = "WaitingForUpload"
    # Dataset
    IngestFailed: Final = "IngestFailed"
    # Evaluation
    Incomplete: Final = "Incomplete"
    Unverified: Final = "Unverified"
    Restarted: Final = "Restarted"
    # InferenceService
    BuildFailed: Final = "BuildFailed"
    NoSuchModel: Final = "NoSuchModel"
    WaitingForModel: Final = "WaitingForModel"
    # InferenceSession
    SessionExpired: Final = "SessionExpired"
    ReplicaFailed: Final = "ReplicaFailed"
    # any workflow whose own code failed
    WorkflowError: Final = "WorkflowError"
    # a workflow whose outputs could not be written: the disk (or the bucket) is full
    StorageFull: Final = "StorageFull"


TERMINAL_STATUSES: Final = frozenset(
    {"Approved", "Complete", "Deleted", "Denied", "Error", "Failed", "Ready", "Terminated"}
)
SUCCESS_STATUSES: Final = frozenset({"Complete", "Ready", "Approved"})
FAILURE_STATUSES: Final = frozenset({"Error", "Failed", "Denied"})


def is_status_terminal(status: str | None) -> bool:
    """True once the entity will not change status again by itself."""
    return status in TERMINAL_STATUSES


def is_status_success(status: str | None) -> bool:
    """True for ``Complete``, ``Ready`` and ``Approved``."""
    return status in SUCCESS_STATUSES


def is_status_failure(status: str | None) -> bool:
    """True for ``Error``, ``Failed`` and ``Denied``."""
    return status in FAILURE_STATUSES
