"""``Client``: the Assay platform on a server, with the API groups and method names of
``LocalPlatform`` (DESIGN §2). See ``docs/design/client.md``."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from assay import errors
from assay.client._analyses import Evaluations, Measurements, SafetyCases, Scores
from assay.client._artifacts import Artifacts, default_cache_dir
from assay.client._groups import Families, InferenceServices, Methods, Reports
from assay.client._progress import ProgressCallback, progress_reporter
from assay.client._retries import Retries
from assay.client._secrets import Secrets
from assay.client._sessions import InferenceSessions
from assay.client._transport import Transport
from assay.client._uploads import Datasets, Models, Modules
from assay.provenance import Verification

__all__ = [
    "ACCOUNT_SUBJECT",
    "ENDPOINT_VARIABLE",
    "GROUPS",
    "LOCAL_ONLY_ATTRIBUTES",
    "TOKEN_VARIABLE",
    "Client",
]

#: The environment variable ``Client()`` reads the server's URL from.
ENDPOINT_VARIABLE = "ASSAY_API_ENDPOINT"
#: The environment variable ``Client()`` reads the API token from.
TOKEN_VARIABLE = "ASSAY_API_TOKEN"
#: The API groups, as ``LocalPlatform`` has them.
GROUPS = (
    "datasets",
    "evaluations",
    "families",
    "inferenceservices",
    "inferencesessions",
    "measurements",
    "methods",
    "models",
    "modules",
    "reports",
    "safetycases",
    "scores",
)
#: How an account's token names its account: its subject (``sub``) is ``Account/<name>``.
ACCOUNT_SUBJECT = "Account/"
#: ``LocalPlatform`` attributes that make no sense remotely.
LOCAL_ONLY_ATTRIBUTES = (
    "storage_root",
    "entity_path",
    "link_entity",
    "resume",
    "config",
    "core",
    "remote",
)


class Client:
    """The platform on an Assay server (``assay serve``): the same API groups and method names
    as ``LocalPlatform``, over HTTP.

    >>> client = Client("http://127.0.0.1:8000", api_token)         # doctest: +SKIP
    >>> client = Client()     # ASSAY_API_ENDPOINT and ASSAY_API_TOKEN  # doctest: +SKIP
    >>> client.datasets.query(name="digits")                        # doctest: +SKIP

    ``endpoint`` is the server's URL (``/v0`` is added unless it ends with it); ``api_token``
    an API token (``assay token create``). ``timeout`` is the seconds one HTTP call may take
    (or an ``httpx.Timeout``); ``retries`` a :class:`Retries` or a number of retries for
    transient failures. ``progress`` is called with a :class:`TransferProgress` during uploads
    and downloads (default: a text bar when standard error is a terminal; False: none).
    ``cache_dir`` is where ``open(id)`` keeps downloaded data (default ``ASSAY_CACHE_DIR``, or
    ``~/.cache/assay/client``). ``transport`` replaces the HTTP transport (e.g.
    ``httpx.MockTransport`` in tests).

    One client holds one pool of keep-alive connections: ``close()`` it, or use it as a
    context manager. Errors are those of :mod:`assay.errors`, as with ``LocalPlatform``.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        api_token: str | None = None,
        *,
        timeout: float | httpx.Timeout = 30.0,
        retries: Retries | int | None = None,
        progress: ProgressCallback | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        endpoint = endpoint or os.environ.get(ENDPOINT_VARIABLE) or None
        api_token = api_token or os.environ.get(TOKEN_VARIABLE) or None
        if endpoint is None:
            also = "" if api_token else f" and an API token (api_token=..., or {TOKEN_VARIABLE})"
            raise errors.ValidationError(
                f"Client needs the server's URL: pass Client(endpoint='http://host:8000', ...) "
                f"or set {ENDPOINT_VARIABLE}{also}",
                field="endpoint",
            )
        if api_token is None:
            raise errors.AuthenticationError(
                f"Client needs an API token for {endpoint}: pass Client(api_token=...) or set "
                f"{TOKEN_VARIABLE} (an operator makes one with 'assay token create')"
            )
        if not isinstance(timeout, httpx.Timeout) and not (
            isinstance(timeout, int | float) and timeout > 0
        ):
            raise errors.ValidationError(
                f"timeout must be a number of seconds > 0 (or an httpx.Timeout), got {timeout!r}",
                field="timeout",
                value=timeout,
            )
        self._token = api_token
        self._transport = Transport(
            endpoint,
            api_token,
            timeout=timeout,
            retries=Retries.of(retries),
            transport=transport,
        )
        self._artifacts = Artifacts(
            self._transport,
            progress=progress_reporter(progress),
            cache_dir=Path(cache_dir).expanduser() if cache_dir else default_cache_dir(),
        )
        self.datasets = Datasets(self)
        self.evaluations = Evaluations(self)
        self.families = Families(self)
        self.inferenceservices = InferenceServices(self)
        self.inferencesessions = InferenceSessions(self)
        self.measurements = Measurements(self)
        self.methods = Methods(self)
        self.models = Models(self)
        self.modules = Modules(self)
        self.reports = Reports(self)
        self.safetycases = SafetyCases(self)
        self.scores = Scores(self)
        self.secrets = Secrets(self)
        """The account's secrets (runner credentials): ``set(name, value)``, ``names()``,
        ``delete(name)``, as ``LocalPlatform.secrets``."""
        self._pipelines: Any = None

    @property
    def pipelines(self) -> Any:
        """Serving pipelines on the server (:class:`assay.client._pipelines.Pipelines`), as
        ``LocalPlatform.pipelines``: ``client.pipelines.create(name)``. (Loaded on first use:
        it needs pyarrow, which ``import assay.client`` does not import.)"""
        if self._pipelines is None:
            from assay.client._pipelines import Pipelines

            self._pipelines = Pipelines(self)
        return self._pipelines

    @property
    def endpoint(self) -> str:
        """The API's base URL (``http://host:port/v0``)."""
        return self._transport.endpoint

    @property
    def account(self) -> str:
        """The account the API token was made for (read from the token; the server decides
        what it may do): the account of what this client creates where a call names none."""
        subject = _token_claims(self._token).get("sub")
        if isinstance(subject, str) and subject.startswith(ACCOUNT_SUBJECT):
            return subject.removeprefix(ACCOUNT_SUBJECT)
        raise errors.ValidationError(
            f"the API token is not an account's token (its subject is {subject!r}); pass the "
            "account to each call, or use a token from 'assay token create --account ...'",
            field="api_token",
        )

    def _default_account(self, what: str) -> str:
        """:attr:`account`, for ``what`` (a create request) that names no account; a token
        without one is refused naming the field and the fix."""
        subject = _token_claims(self._token).get("sub")
        if isinstance(subject, str) and subject.startswith(ACCOUNT_SUBJECT):
            return subject.removeprefix(ACCOUNT_SUBJECT)
        raise errors.ValidationError(
            f"{what}: account is missing, and the API token has no account to default to (it "
            f"was made for {subject!r}, not for an account); pass account='NAME' (in the call, "
            "or as the request's 'account'), or use a token from 'assay token create --account "
            "NAME'",
            field="account",
        )

    @property
    def cache_dir(self) -> Path:
        """Where ``open(id)`` keeps downloaded data."""
        return self._artifacts.cache_dir

    def provenance(self, id: str) -> dict[str, Any] | None:
        """Entity ``id``'s provenance block (``LocalPlatform.provenance``); None where it
        recorded none."""
        resource = self._provenance_kind(id)
        try:
            block: dict[str, Any] = self._transport.json("GET", f"/{resource}/{id}/provenance")
        except errors.NotFoundError:
            return None
        return block

    def verify(self, id: str) -> Verification:
        """Re-hash the chain from entity ``id`` back to its data, on the server
        (``LocalPlatform.verify``)."""
        from assay.provenance import Link

        resource = self._provenance_kind(id)
        answer = self._transport.json("GET", f"/{resource}/{id}/verify")
        links = [Link(**link) for link in answer.get("links") or []]
        return Verification(answer.get("id", id), links)

    def _provenance_kind(self, id: str) -> str:
        """The resource of entity ``id`` among those that record provenance."""
        for resource in ("safetycases", "measurements", "evaluations", "datasets"):
            try:
                self._transport.json("GET", f"/{resource}/{id}")
            except errors.NotFoundError:
                continue
            return resource
        raise errors.NotFoundError(
            f"no Dataset, Evaluation, Measurement or SafetyCase {id!r} (the kinds that record "
            "provenance); check the id",
            id=id,
        )

    def close(self) -> None:
        """Close the connections. Closing twice is harmless."""
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(endpoint={self.endpoint!r})"

    def __getattr__(self, name: str) -> Any:
        if name in LOCAL_ONLY_ATTRIBUTES:
            raise AttributeError(
                f"Client has no {name!r}: it belongs to LocalPlatform, whose state is on this "
                "machine; a Client's platform is on the server"
            )
        raise AttributeError(
            f"Client has no attribute {name!r}; its API groups are {', '.join(GROUPS[:-1])} "
            f"and {GROUPS[-1]}"
        )


def _token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (only the server can verify them)."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
