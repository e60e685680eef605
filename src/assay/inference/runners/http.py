"""The ``http`` runner: a service that already runs at a URL (audit production systems as
they are).

Configuration: ``{"url": "https://host/base", "credential": {"env": "VAR"} | {"secret":
"name"}, "header": "Authorization", "scheme": "Bearer", "readyPath": "/health"}``. The
credential's value is looked up when a session starts and never stored in the entity: a
``secret`` of the service's own account (:mod:`assay.core.secrets`), or an environment
variable of the platform's process — on a multi-user server only one its operator names
(``Policy.credential_env_allow``). The URL's host must be one the platform's policy allows
(:mod:`assay.inference.runners.hosts`), checked at creation and when each replica starts. Each
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
from assay.policy import Policy

if TYPE_CHECKING:
    from assay.schema.platform import InferenceService, InferenceSession

__all__ = [
    "REFUSED_GRACE",
    "RUNNER",
    "HTTPRunner",
    "ServiceHandle",
    "check_credential",
    "check_service",
    "credential_headers",
    "runner_policy",
    "service_handle",
    "wait_for",
    "wait_ready_at",
]


def runner_policy(env: RunnerEnv | None) -> Policy:
    """The policy of the platform a runner works for (:mod:`assay.policy`)."""
    policy = getattr(env.platform, "policy", None) if env is not None else None
    return policy if isinstance(policy, Policy) else Policy()


def check_credential(credential: Any, policy: Policy, what: str) -> None:
    """Refuse a credential that is not ``{'env': VARIABLE}`` or ``{'secret': name}``, or that
    names a server variable the policy does not let services use."""
    from assay.core.secrets import check_name

    field = "runner.configuration.credential"
    if (
        not isinstance(credential, dict)
        or len(credential) != 1
        or not ({"env", "secret"} & set(credential))
        or not isinstance(next(iter(credential.values())), str)
        or not next(iter(credential.values()))
    ):
        raise errors.ValidationError(
            f"{what}: {field} must be {{'secret': 'name'}} (a secret of the service's account: "
            f"assay secrets set NAME) or {{'env': 'VARIABLE'}}, got {credential!r}",
            field=field,
        )
    if "secret" in credential:
        try:
            check_name(credential["secret"])
        except errors.ValidationError as exc:
            raise errors.ValidationError(
                f"{what}: {field}.secret: {exc}", field=f"{field}.secret"
            ) from None
        return
    variable = credential["env"]
    allowed = policy.credential_env_allow
    if allowed is not None and variable not in allowed:
        listed = ", ".join(allowed) if allowed else "none"
        raise errors.ValidationError(
            f"{what}: {field}.env names the server environment variable {variable!r}, which "
            f"this server does not let services use (the variables it allows: {listed}). Keep "
            "the credential as a secret of your account instead — 'assay secrets set NAME' "
            "(the value is read from standard input) or Client.secrets.set(NAME, value) — and "
            "use {'secret': NAME}; or ask the server's operator to add the variable to "
            "ASSAY_CREDENTIAL_ENV_ALLOW",
            field=f"{field}.env",
            value=variable,
        )


def check_service(
    service: InferenceService, env: RunnerEnv | None, key: str, *, starting: bool
) -> str:
    """The service's URL (configuration ``key``), its credential and its host checked against
    the platform's policy; ``starting``: a replica is about to start (a host name must
    resolve, to addresses that are allowed now)."""
    url = check_url(service, key)
    policy = runner_policy(env)
    what = f"InferenceService {service.name!r}" + (f" ({service.id})" if starting else "")
    credential = configuration(service).get("credential")
    if credential is not None:
        check_credential(credential, policy, what)
    from assay.inference.runners.hosts import check_service_host

    check_service_host(
        url,
        policy.allowed_hosts,
        what=what,
        field=f"runner.configuration.{key}",
        unresolved_ok=not starting,
    )
    return url


def credential_headers(
    config: dict[str, Any], env: RunnerEnv, what: str, account: str
) -> dict[str, str]:
    """The header carrying the configured credential (none configured: no header); a
    secret is ``account``'s (the service's account)."""
    credential = config.get("credential")
    if not credential:
        return {}
    check_credential(credential, runner_policy(env), what)
    if "env" in credential:
        value = os.environ.get(str(credential["env"]))
        if not value:
            raise errors.ValidationError(
                f"{what}: the credential's environment variable {credential['env']!r} is not set in "
                "the process that starts the session; set it, or use a platform secret",
                field="runner.configuration.credential.env",
            )
    else:
        value = env.secret(account, str(credential["secret"]))
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
        check_service(service, env, "url", starting=False)
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
        url = check_service(service, env, "url", starting=True)  # type: ignore[arg-type]
        config = configuration(service)  # type: ignore[arg-type]
        what = f"InferenceService {service.id}"
        headers = credential_headers(config, env, what, service.account)
        return service_handle(service, index, url, headers, config.get("readyPath"))  # type: ignore[arg-type]

    def wait_ready(self, handle: ReplicaHandle, timeout: float) -> None:
        wait_ready_at(handle, timeout, "the service")


RUNNER = HTTPRunner()
