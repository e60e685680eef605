"""The ``http`` runner: a service that already runs at a URL (audit production systems as
they are).

Configuration: ``{"url": "https://host/base", "credential": {"env": "VAR"} | {"secret":
"name"}, "header": "Authorization", "scheme": "Bearer", "readyPath": "/health"}``. The
credential's value is looked up when a session starts and never stored in the entity. Each
replica is the same URL (``replicas`` then sets how many connections a client spreads over).

A session waits until the service answers (``readyPath`` 2xx, or a connection), at most
``readyTimeoutSeconds`` (default 120); but when nothing listens at the URL (connections
refused, a host name that does not resolve) it fails after :data:`REFUSED_GRACE` seconds,
saying so, unless the service sets ``readyTimeoutSeconds`` (it may still be starting).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from assay import errors
from assay.inference.runners.base import (
    ReplicaHandle,
    Runner,
    RunnerEnv,
    config_error,
    configuration,
)

if TYPE_CHECKING:
    from assay.schema.platform import InferenceService, InferenceSession

__all__ = [
    "REFUSED_GRACE",
    "RUNNER",
    "HTTPRunner",
    "ServiceHandle",
    "credential_headers",
    "service_handle",
    "wait_for",
    "wait_ready_at",
]


def credential_headers(config: dict[str, Any], env: RunnerEnv, what: str) -> dict[str, str]:
    """The header carrying the configured credential (none configured: no header)."""
    credential = config.get("credential")
    if not credential:
        return {}
    if (
        not isinstance(credential, dict)
        or len(credential) != 1
        or not ({"env", "secret"} & set(credential))
    ):
        raise errors.ValidationError(
            f"{what}: runner.configuration.credential must be {{'env': 'VARIABLE'}} or {{'secret': 'name'}}",
            field="runner.configuration.credential",
        )
    if "env" in credential:
        value = os.environ.get(str(credential["env"]))
        if not value:
            raise errors.ValidationError(
                f"{what}: the credential's environment variable {credential['env']!r} is not set in "
                "the process that starts the session; set it, or use a platform secret",
                field="runner.configuration.credential.env",
            )
    else:
        value = env.secret(str(credential["secret"]))
    header = str(config.get("header") or "Authorization")
    scheme = config.get("scheme", "Bearer")
    return {header: f"{scheme} {value}" if scheme else value}


def check_url(service: InferenceService, key: str) -> str:
    url = configuration(service).get(key)
    if not isinstance(url, str) or not url:
        raise config_error(
            service, key, "is required: the base URL of the service, e.g. 'http://127.0.0.1:8080'"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise config_error(service, key, f"must be an http(s) URL with a host, got {url!r}")
    return url.rstrip("/")


#: Seconds a service that runs elsewhere may refuse connections (or its host name fail to
#: resolve) before its session fails: nothing listens there. A service that sets
#: ``readyTimeoutSeconds`` is waited for that long instead (it may still be starting).
REFUSED_GRACE = 3.0


@dataclass
class ServiceHandle(ReplicaHandle):
    """A replica of a service that runs elsewhere (``http``, ``openai``)."""

    wait_refused: bool = False
    """Wait through refused connections for the whole ready timeout (the service sets
    ``readyTimeoutSeconds``), instead of failing after :data:`REFUSED_GRACE` seconds."""


def service_handle(
    service: InferenceService, index: int, url: str, headers: dict[str, str], ready_path: Any
) -> ServiceHandle:
    """The handle of replica ``index`` of a service at ``url``."""
    explicit = "readyTimeoutSeconds" in configuration(service)
    return ServiceHandle(
        index=index,
        style="plain",
        url=url,
        headers=headers,
        ready_path=ready_path,
        wait_refused=explicit,
    )


def wait_ready_at(handle: ReplicaHandle, timeout: float, what: str) -> None:
    """:func:`wait_for` a service's replica, failing fast when nothing listens at its URL
    (unless the service asked to be waited for)."""
    waits = isinstance(handle, ServiceHandle) and handle.wait_refused
    grace = None if waits else REFUSED_GRACE
    wait_for(
        handle.url or "", handle.headers, handle.ready_path, timeout, what, refused_grace=grace
    )


def _nothing_listens(exc: BaseException) -> str | None:
    """Why nothing can listen at the address (a refused connection, a host name that does
    not resolve); None for other failures (a timeout, a reset: something may be there)."""
    while exc is not None:
        if isinstance(exc, ConnectionRefusedError):
            return "the connection was refused"
        if isinstance(exc, socket.gaierror):
            return f"the host name does not resolve ({exc.strerror or exc})"
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


def wait_for(
    url: str,
    headers: dict[str, str],
    ready_path: str | None,
    timeout: float,
    what: str,
    *,
    refused_grace: float | None = None,
) -> None:
    """Wait until ``url`` accepts connections (or ``ready_path`` answers 2xx), at most
    ``timeout`` seconds. With ``refused_grace``, fail once nothing has listened there (refused
    connections, a host name that does not resolve) for that many seconds: a service that
    runs elsewhere and is not there will not come by itself. A ``ready_path`` that answers
    (503 while it loads) is waited for up to ``timeout``."""
    import httpx

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    started = time.monotonic()
    deadline = started + timeout
    delay = 0.02
    last = "no attempt"
    refused_since: float | None = None
    while True:
        try:
            if ready_path:
                with httpx.Client(timeout=5) as client:
                    reply = client.get(url + "/" + ready_path.lstrip("/"), headers=headers)
                if reply.is_success:
                    return
                last = f"{ready_path} answered {reply.status_code}"
            else:
                with socket.create_connection((parts.hostname or "", port), timeout=5):
                    return
            refused_since = None
        except (OSError, httpx.HTTPError) as exc:
            last = f"{type(exc).__name__}: {exc}"
            why = _nothing_listens(exc)
            now = time.monotonic()
            if why is None:
                refused_since = None
            elif refused_since is None:
                refused_since = now
            if (
                why is not None
                and refused_since is not None
                and refused_grace is not None
                and now - refused_since >= refused_grace
            ):
                raise errors.UnavailableError(
                    f"{what} at {url}: nothing listens there ({why}, for "
                    f"{now - started:.0f} s; host {parts.hostname}, port {port}). Start the "
                    "service, check the URL and port in the service's runner configuration, or, "
                    "if it is still starting, set runner.configuration.readyTimeoutSeconds (the "
                    f"seconds to wait for it; {timeout:g} by default)"
                ) from None
        if time.monotonic() >= deadline:
            raise errors.UnavailableError(
                f"{what} at {url} did not become ready in {timeout:g} s (last: {last}); check "
                "that it runs and answers, or raise runner.configuration.readyTimeoutSeconds"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


class HTTPRunner(Runner):
    kind = "http"

    def check(self, service: InferenceService, env: RunnerEnv | None = None) -> None:
        check_url(service, "url")
        credential = configuration(service).get("credential")
        if credential is not None and (
            not isinstance(credential, dict) or not ({"env", "secret"} & set(credential))
        ):
            raise config_error(
                service, "credential", "must be {'env': 'VARIABLE'} or {'secret': 'name'}"
            )
        ready_path = configuration(service).get("readyPath")
        if ready_path is not None and (not isinstance(ready_path, str) or "://" in ready_path):
            raise config_error(
                service,
                "readyPath",
                f"must be a path on the service's url (e.g. '/health'), not a URL; "
                f"got {ready_path!r}",
            )

    def start(self, session: InferenceSession, index: int, env: RunnerEnv) -> ReplicaHandle:
        service = session.inferenceService
        url = check_url(service, "url")  # type: ignore[arg-type]
        config = configuration(service)  # type: ignore[arg-type]
        headers = credential_headers(config, env, f"InferenceService {service.id}")
        return service_handle(service, index, url, headers, config.get("readyPath"))  # type: ignore[arg-type]

    def wait_ready(self, handle: ReplicaHandle, timeout: float) -> None:
        wait_ready_at(handle, timeout, "the service")


RUNNER = HTTPRunner()
