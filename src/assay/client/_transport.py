"""``Transport``: one keep-alive HTTP connection pool to the server, with authentication,
retries and the mapping of error answers to :mod:`assay.errors`.

Every call of every API group goes through :meth:`Transport.send`. API calls carry the API
token (or a session token) as ``Authorization: Bearer``; calls to signed artifact URLs carry
no token at all (the signature is the permission, and the storage may be another host).
Messages never show a signed URL's query string.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx

from assay import __version__, errors
from assay.client._errors import error_for_response
from assay.client._retries import (
    REFUSED_STATUSES,
    RETRY_STATUSES,
    Attempts,
    Retries,
    RetryMode,
    parse_retry_after,
)
from assay.schema.base import EXTENSIONS_HEADER

__all__ = ["API_VERSION", "Content", "Transport", "normalize_endpoint"]

#: The path segment of the API version this client speaks.
API_VERSION = "v0"

#: A request body: bytes, or a function that makes the chunks afresh for every try.
Content = bytes | Callable[[], Iterable[bytes]]

#: Transport errors after which the request surely never reached the server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def normalize_endpoint(endpoint: str) -> str:
    """The API's base URL: ``http://host:8000`` and ``http://host:8000/v0/`` both become
    ``http://host:8000/v0``."""
    from assay import errors

    url = endpoint.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise errors.ValidationError(
            f"endpoint {endpoint!r} is not an http:// or https:// URL; give the server's URL, "
            "e.g. 'http://127.0.0.1:8000'",
            field="endpoint",
            value=endpoint,
        )
    if not url.endswith(f"/{API_VERSION}"):
        url += f"/{API_VERSION}"
    return url


def _shown(url: httpx.URL) -> str:
    """A URL fit for messages: no query string (a signed URL's signature stays private)."""
    return str(url.copy_with(query=None, fragment=None))


class Transport:
    """Sends requests to one Assay server."""

    def __init__(
        self,
        endpoint: str,
        token: str,
        *,
        timeout: float | httpx.Timeout = 30.0,
        retries: Retries | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = normalize_endpoint(endpoint)
        self._token = token
        self.retries = retries or Retries()
        self._http = httpx.Client(
            timeout=timeout,
            # Assay's wire format, with its extensions (``assay.server.wire``)
            headers={"User-Agent": f"assay-client/{__version__}", EXTENSIONS_HEADER: "true"},
            follow_redirects=False,
            transport=transport,
        )

    def url(self, path: str) -> str:
        """The absolute URL of an API path (``/datasets/...``); absolute URLs are kept."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.endpoint}/{path.lstrip('/')}"

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        json: Any = None,
        content: Content | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        signed: bool = False,
        mode: RetryMode | None = None,
        stream: bool = False,
        timeout: float | None = None,
        kind: str | None = None,
        id: str | None = None,
    ) -> httpx.Response:
        """Send one call, retrying transient failures as ``mode`` allows (default: GET, PUT,
        PATCH and DELETE are idempotent, POST only when the server surely did nothing), and
        return the successful response. Error answers raise the :mod:`assay.errors` class of
        their status; ``kind`` and ``id`` name the entity for ``NotFoundError``.

        ``token`` replaces the API token (a session token); ``signed`` sends none (a signed
        URL). With ``stream`` the body is not read: close the response. ``timeout`` (seconds)
        replaces the client's for this call."""
        if self._http.is_closed:
            raise errors.ConflictError(
                f"this Client of {self.endpoint} is closed; make a new one (or use it in a "
                "'with' block that encloses every call)"
            )
        if mode is None:
            mode = RetryMode.REFUSED if method.upper() == "POST" else RetryMode.IDEMPOTENT
        all_headers = dict(headers or {})
        if not signed:
            all_headers["Authorization"] = f"Bearer {token or self._token}"
        url = self.url(path)
        attempts = self.retries.start()
        while True:
            body = content() if callable(content) else content
            request = self._http.build_request(
                method,
                url,
                params=tuple(params) if params is not None else None,
                json=json,
                content=body,
                headers=all_headers,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                if self._may_retry_failure(exc, mode) and attempts.wait():
                    continue
                raise self._unreachable(request, exc, attempts, signed=signed) from None
            if response.status_code < 400:
                return response
            if stream:  # error bodies are small: read them, and free the connection
                response.read()
                response.close()
            if self._may_retry_status(response.status_code, mode) and attempts.wait(
                parse_retry_after(response.headers.get("Retry-After"))
            ):
                continue
            error = error_for_response(response, kind=kind, id=id)
            if isinstance(error, errors.UnavailableError) and attempts.count > 1:
                error = type(error)(
                    f"{error.message} ({attempts.describe()})", retry_after=error.retry_after
                )
            raise error

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON body of a successful call (see :meth:`send`)."""
        response = self.send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise errors.PlatformError(
                f"{method} {_shown(response.request.url)} answered {response.status_code} with "
                f"a body that is not JSON: {response.text[:200]!r}"
            ) from None

    @staticmethod
    def _may_retry_failure(exc: httpx.TransportError, mode: RetryMode) -> bool:
        if mode is RetryMode.NEVER:
            return False
        if isinstance(exc, _NOT_SENT):
            return True
        return mode is RetryMode.IDEMPOTENT and isinstance(
            exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError
        )

    @staticmethod
    def _may_retry_status(status: int, mode: RetryMode) -> bool:
        if mode is RetryMode.IDEMPOTENT:
            return status in RETRY_STATUSES
        return mode is RetryMode.REFUSED and status in REFUSED_STATUSES

    def _unreachable(
        self, request: httpx.Request, exc: httpx.TransportError, attempts: Attempts, *, signed: bool
    ) -> errors.AssayError:
        where = (
            f"the storage at {_shown(request.url)}"
            if signed
            else f"the Assay server at {self.endpoint}"
        )
        cause = str(exc) or type(exc).__name__
        tried = attempts.describe()
        if isinstance(exc, httpx.TimeoutException):
            return errors.UnavailableError(
                f"{request.method} {_shown(request.url)}: {where} did not answer in time "
                f"({type(exc).__name__}, {tried}); try again, or raise Client(timeout=...)"
            )
        if isinstance(exc, httpx.UnsupportedProtocol):
            return errors.ValidationError(
                f"{request.method} {_shown(request.url)}: not a URL the client can call ({cause})",
                field="endpoint",
            )
        hint = "; check the endpoint (ASSAY_API_ENDPOINT) and that the server is running"
        return errors.UnavailableError(
            f"cannot reach {where}: {cause} ({tried}){'' if signed else hint}"
        )

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    @property
    def closed(self) -> bool:
        return self._http.is_closed
