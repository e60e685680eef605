"""``BodyLimit``: refuse request bodies over the configured size with 413.

A body that declares its size (``Content-Length``) is refused before a byte is read; one sent
in chunks is counted as it arrives and refused as soon as it passes the limit. JSON routes
have ``max_body_bytes``; signed artifact uploads (``PUT /v0/storage/...``) have
``max_upload_bytes`` and are streamed into storage, never held in memory.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit"]


def _too_large(limit: int) -> str:
    return (
        f"the request body is larger than this server accepts ({limit:,} bytes); send less "
        "(or, for artifacts, raise ASSAY_MAX_UPLOAD_BYTES)"
    )


class BodyLimit:
    """ASGI middleware: 413 for bodies over ``limit`` (``upload_limit`` for ``PUT`` under
    ``upload_prefix``)."""

    def __init__(self, app: ASGIApp, *, limit: int, upload_limit: int, upload_prefix: str) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit
        self.upload_prefix = upload_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        upload = scope.get("method") == "PUT" and path.startswith(self.upload_prefix)
        limit = self.upload_limit if upload else self.limit
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                declared = value
                break
        if declared is not None:
            if not declared.isdigit():
                await _reply(send, 400, "the Content-Length header is not a number")
                return
            if int(declared) > limit:
                await _reply(send, 413, _too_large(limit))
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, _too_large(limit))
            return message

        await self.app(scope, limited, send)


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
