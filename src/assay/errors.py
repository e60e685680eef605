"""The one exception hierarchy of Assay.

Every error that reaches a user of ``LocalPlatform``, ``Client`` or the ``assay``
command is one of these; the server maps them to HTTP status codes in one place
(:data:`HTTP_STATUS`) and the client maps the codes back.

```
AssayError
 ├── ValidationError          bad input: names the entity, the field, the rule, the value, the fix
 │    ├── DataIntegrityError  a digest mismatch, a corrupt or unreadable data file
 │    └── UnsafePathError     a path that is absolute, leaves its entity or is reserved (400)
 ├── NotFoundError            no entity of that kind with that id (or no such artifact)
 ├── ConflictError            duplicate id, concurrent modification, wrong state for the call
 ├── AuthenticationError      no credentials, or credentials that cannot be verified
 ├── PermissionDeniedError    verified credentials that do not allow the call
 ├── WorkflowFailedError      a workflow that was waited on ended in a failure status
 ├── WaitTimeoutError         a wait ran out of time before the entity reached a terminal status
 ├── UnavailableError         a transient condition; retry after ``retry_after`` seconds
 │    └── TooManyRequestsError  over a limit on calls at once (429); retry after a while
 └── PlatformError            an internal fault of the platform (a bug, or broken storage)
```
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "HTTP_STATUS",
    "AssayError",
    "AuthenticationError",
    "ConflictError",
    "DataIntegrityError",
    "NotFoundError",
    "PermissionDeniedError",
    "PlatformError",
    "TooManyRequestsError",
    "UnavailableError",
    "UnsafePathError",
    "ValidationError",
    "WaitTimeoutError",
    "WorkflowFailedError",
]


class AssayError(Exception):
    """Base class of every error Assay raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ValidationError(AssayError, ValueError):
    """Input that breaks a rule. The message names the entity (where there is one), the
    field, what was expected and how to fix it."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        value: Any = None,
        entity: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.value = value
        self.entity = entity
        self.errors = errors or []


class DataIntegrityError(ValidationError):
    """Data that is not what it claims to be: a digest mismatch, a corrupt file."""


class UnsafePathError(ValidationError):
    """A path a user named that may not be used: absolute, leaving its entity (``..``, a
    link out), with unsafe characters, or reserved for the platform (``.assay*``). Refused
    with 400, not 422: no value of the field's type is wrong here, the path is."""


class NotFoundError(AssayError, LookupError):
    """No entity (or artifact) with that id."""

    def __init__(self, message: str, *, kind: str | None = None, id: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.id = id

    @classmethod
    def entity(cls, kind: str, id: str) -> NotFoundError:
        return cls(
            f"{kind} {id!r} does not exist (check the id, or query to find it)", kind=kind, id=id
        )


class ConflictError(AssayError):
    """The call conflicts with the current state: a duplicate id, a concurrent change,
    or an entity in a status that does not allow the call."""


class AuthenticationError(AssayError):
    """No credentials were given, or they could not be verified."""


class PermissionDeniedError(AssayError, PermissionError):
    """The credentials are valid but do not allow this call."""


class WorkflowFailedError(AssayError):
    """A workflow that was waited on ended in a failure status."""

    def __init__(self, message: str, *, entity: Any = None) -> None:
        super().__init__(message)
        self.entity = entity


class WaitTimeoutError(AssayError, TimeoutError):
    """A wait ran out of time before the entity reached a terminal status."""


class UnavailableError(AssayError):
    """A transient condition: the same call may succeed after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyRequestsError(UnavailableError):
    """The caller has as many calls running as a limit allows (HTTP 429); the same call may
    succeed once some of them have ended (after ``retry_after`` seconds)."""


class PlatformError(AssayError):
    """An internal fault of the platform. Please report it with the message."""


#: HTTP status code for each error type; the most specific class wins.
HTTP_STATUS: dict[type[AssayError], int] = {
    DataIntegrityError: 422,
    UnsafePathError: 400,
    ValidationError: 422,
    NotFoundError: 404,
    ConflictError: 409,
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    WorkflowFailedError: 409,
    WaitTimeoutError: 408,
    TooManyRequestsError: 429,
    UnavailableError: 503,
    PlatformError: 500,
    AssayError: 500,
}
