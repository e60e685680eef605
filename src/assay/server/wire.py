"""Which wire format an answer is in: the reference's, or Assay's with its extensions.

The server answers in the reference's wire format (``to_wire(reference=True)``): the
reference's own models, which refuse unknown fields, parse every answer, so the reference
client and anything built on its schema package work unchanged. A client that sends
``X-Assay-Extensions: true`` (Assay's own client does) gets Assay's wire format, with
Assay's extensions: a score's confidence ``interval`` and ``confidence``, a runner's
``configuration`` and Assay's runner kinds, Assay's evaluation client options (see
``docs/design/wire-format.md``).

:class:`WireFormat` (ASGI middleware) reads the header of each request; :func:`wire_context`
is the serialisation context of the current request's answers.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from assay.schema.base import EXTENSIONS_HEADER, REFERENCE_WIRE

__all__ = ["EXTENSIONS_HEADER", "WireFormat", "asks_for_extensions", "wire_context"]

_HEADER = EXTENSIONS_HEADER.lower().encode()
_YES = (b"true", b"1")

#: The serialisation context of the answers to the current request (None: Assay's wire).
_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("assay_wire", default=REFERENCE_WIRE)


def wire_context() -> dict[str, Any] | None:
    """The serialisation context of the current request's answers: :data:`REFERENCE_WIRE`,
    or None when the request asked for Assay's extensions."""
    return _CONTEXT.get()


def asks_for_extensions(scope: Scope) -> bool:
    """True when the request sends ``X-Assay-Extensions: true``."""
    return any(
        name == _HEADER and value.strip().lower() in _YES for name, value in scope["headers"]
    )


class WireFormat:
    """ASGI middleware: the answers to a request that sends ``X-Assay-Extensions: true`` are
    in Assay's wire format; all others in the reference's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _CONTEXT.set(None if asks_for_extensions(scope) else REFERENCE_WIRE)
        try:
            await self.app(scope, receive, send)
        finally:
            _CONTEXT.reset(token)
