"""The ``http`` runner: a service that already runs at a URL (audit production systems as
they are).

Configuration: ``{"url": "https://host/base", "credential": {"env": "VAR"} | {"secret":
"name"}, "header": "Authorization", "scheme": "Bearer", "readyPath": "/health"}``. The
credential's value is looked up when a session starts and never stored in the entity. Each
replica is the same URL (``replicas`` then sets how many connections a client spreads over).
"""

from __future__ import annotations

import os
import socket
import time
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

__all__ = ["RUNNER", "HTTPRunner", "credential_headers"]


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


def wait_for(
    url: str, headers: dict[str, str], ready_path: str | None, timeout: float, what: str
) -> None:
    """Wait until ``url`` accepts connections (or ``ready_path`` answers 2xx)."""
    import httpx

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    deadline = time.monotonic() + timeout
    delay = 0.02
    last = "no attempt"
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
        except (OSError, httpx.HTTPError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise errors.UnavailableError(
                f"{what} at {url} did not become ready in {timeout:g} s (last: {last})"
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
        ready_path = config.get("readyPath")
        return ReplicaHandle(
            index=index, style="plain", url=url, headers=headers, ready_path=ready_path
        )

    def wait_ready(self, handle: ReplicaHandle, timeout: float) -> None:
        wait_for(handle.url or "", handle.headers, handle.ready_path, timeout, "the service")


RUNNER = HTTPRunner()
