"""HTTP answers back to :mod:`assay.errors`: the inverse of :data:`assay.errors.HTTP_STATUS`.

The server turns every :class:`~assay.errors.AssayError` into ``{"detail": "..."}`` with the
status code of its class; the client turns the status back into a class and raises it with
the server's detail as the message, so ``except NotFoundError`` works the same against
``LocalPlatform`` and ``Client``.

Some statuses are shared by two classes (422: ``ValidationError`` and its subclass
``DataIntegrityError``; 409: ``ConflictError`` and ``WorkflowFailedError``); the status alone
gives the more general one. A server that names the class in the ``X-Assay-Error`` header
(see ``docs/design/client.md``) gets the exact class back.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from assay import errors
from assay.client._retries import parse_retry_after

if TYPE_CHECKING:
    import httpx

__all__ = ["ERROR_HEADER", "STATUS_ERRORS", "STEP_HEADER", "error_for_response", "error_for_status"]

#: The response header that may name the exact error class (``DataIntegrityError``).
ERROR_HEADER = "X-Assay-Error"
#: With ``X-Assay-Error: PipelineStepError``: the index of the pipeline step that failed.
STEP_HEADER = "X-Assay-Pipeline-Step"


def _inverse() -> dict[int, type[errors.AssayError]]:
    """status → the most general class mapped to it by ``HTTP_STATUS``."""
    out: dict[int, type[errors.AssayError]] = {}
    for cls, status in errors.HTTP_STATUS.items():
        if cls is errors.AssayError:
            continue
        known = out.get(status)
        # keep the most general class of a status: ValidationError over DataIntegrityError;
        # between unrelated classes (409: ConflictError, WorkflowFailedError) the first listed
        if known is None or issubclass(known, cls):
            out[status] = cls
    return out


#: The class each status code becomes (statuses not listed: see :func:`error_for_status`).
STATUS_ERRORS: dict[int, type[errors.AssayError]] = {
    **_inverse(),
    400: errors.ValidationError,  # a body that is not JSON, or not an object
    410: errors.NotFoundError,
    411: errors.ValidationError,  # an upload without Content-Length
    413: errors.ValidationError,  # a body over the server's limit
    429: errors.UnavailableError,
    502: errors.UnavailableError,
    504: errors.UnavailableError,
}


def error_for_status(status: int) -> type[errors.AssayError]:
    """The error class for an HTTP error status."""
    cls = STATUS_ERRORS.get(status)
    if cls is not None:
        return cls
    return errors.ValidationError if 400 <= status < 500 else errors.PlatformError


def _named_class(name: str | None) -> type[errors.AssayError] | None:
    if not name:
        return None
    cls = getattr(errors, name.strip(), None)
    if isinstance(cls, type) and issubclass(cls, errors.AssayError):
        return cls
    return None


def response_detail(response: httpx.Response) -> str:
    """The ``detail`` of an error answer, or what the body says when it has none (a proxy's
    HTML page, say)."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        text = " ".join(response.text.split())[:300]
        return f"HTTP {response.status_code} {response.reason_phrase}" + (
            f": {text}" if text else ""
        )
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return detail if isinstance(detail, str) else json.dumps(detail)[:500]
    return f"HTTP {response.status_code} {response.reason_phrase}: {json.dumps(body)[:300]}"


def error_for_response(
    response: httpx.Response, *, kind: str | None = None, id: str | None = None
) -> errors.AssayError:
    """The exception for an error answer (``response.status_code >= 400``); ``kind`` and
    ``id`` name the entity the call was about, for :class:`~assay.errors.NotFoundError`."""
    status = response.status_code
    detail = response_detail(response)
    if response.headers.get(ERROR_HEADER) == "PipelineStepError":  # not in assay.errors
        from assay.pipelines.execution import PipelineStepError

        step = response.headers.get(STEP_HEADER, "-1")
        return PipelineStepError(detail, step=int(step) if step.lstrip("-").isdigit() else -1)
    cls = _named_class(response.headers.get(ERROR_HEADER)) or error_for_status(status)
    if issubclass(cls, errors.UnavailableError):
        return cls(detail, retry_after=parse_retry_after(response.headers.get("Retry-After")))
    if issubclass(cls, errors.NotFoundError):
        return cls(detail, kind=kind, id=id)
    if cls is errors.PlatformError and status >= 500:
        return cls(f"the server failed (HTTP {status}): {detail}")
    return cls(detail)
