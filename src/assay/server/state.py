"""What every route needs: the platform core, the settings, the authenticator and the URL
signer (:class:`ServerState`), and the FastAPI dependencies that hand them to routes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio.to_thread
import sqlalchemy as sa
from fastapi import Depends, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPBearer

from assay import errors
from assay.core.platform import CoreConfig, PlatformCore, PlatformFactory
from assay.core.tokens import TokenSigner
from assay.engine import Executor
from assay.schema.base import SchemaModel
from assay.server.access import Principal
from assay.server.auth import Authenticator, RevocationList
from assay.server.executor import WorkflowThreadExecutor
from assay.server.fairness import InferenceLimits
from assay.server.settings import PRIVATE_DIR, SECRET_FILE, ServerSettings
from assay.server.signed_urls import ArtifactURLSigner
from assay.server.wire import wire_context

__all__ = [
    "Caller",
    "ServerState",
    "State",
    "base_url",
    "build_core",
    "caller",
    "core_config",
    "json_response",
    "server_state",
]

DATABASE_FILE = "assay.db"

T = TypeVar("T")


def core_config(settings: ServerSettings) -> CoreConfig:
    """Where a server's core keeps its state: the layout of ``LocalPlatform(storage_root=
    settings.data_dir)`` (``assay.db``, one directory per entity, ``.assay/``)."""
    root = settings.root
    private = root / PRIVATE_DIR
    sqlite = sa.URL.create("sqlite", database=str(root / DATABASE_FILE))
    return CoreConfig(
        store_url=settings.database_url or sqlite.render_as_string(hide_password=False),
        storage_root=root,
        secret_file=None if settings.signing_secret is not None else root / SECRET_FILE,
        secrets_path=private / "secrets.json",
        cache_path=private / "cache" / "responses.db",
        policy=settings.policy(),
        storage_url=settings.storage,
    )


def build_core(settings: ServerSettings) -> PlatformCore:
    """The platform core of a server, on ``settings.data_dir`` (:func:`core_config`), with
    workflows in background threads (:class:`WorkflowThreadExecutor`) or worker processes
    (``settings.executor``)."""
    settings.root.mkdir(parents=True, exist_ok=True)
    config = core_config(settings)
    executor: Executor
    if settings.executor == "processes":
        from assay.engine.processes import ProcessExecutor

        executor = ProcessExecutor(PlatformFactory(config), workers=settings.workers)
    elif settings.executor == "ray":
        from assay.engine.ray_executor import RayExecutor

        executor = RayExecutor(
            settings.ray_address,
            factory=PlatformFactory(config),
            setting="--ray-address / ASSAY_RAY_ADDRESS",
        )
    else:
        executor = WorkflowThreadExecutor(shutdown_timeout=settings.shutdown_timeout)
    core = PlatformCore.from_config(config, executor=executor)
    if settings.signing_secret is not None:
        core.signer = TokenSigner(settings.secret())
    return core


def _stop_workflows(core: PlatformCore, timeout: float) -> None:
    """Give running workflows ``timeout`` seconds; leave the rest to ``resume()``."""
    executor = core.engine.executor
    running = getattr(executor, "running", None)
    if executor.name not in ("processes", "ray") or not callable(running):
        return  # the thread executor waits up to its own timeout when the engine closes
    deadline = time.monotonic() + timeout
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    executor.shutdown(wait=False)  # kills what is left; those workflows stay Admitted


class ServerState:
    """The running server's parts; ``app.state.assay`` holds one."""

    def __init__(self, settings: ServerSettings, core: PlatformCore | None = None) -> None:
        self.settings = settings
        self._core = core
        self.owns_core = core is None
        self._authenticator: Authenticator | None = None
        self._urls: ArtifactURLSigner | None = None
        self._pipelines: Any = None
        self._pipelines_lock = threading.Lock()
        self._inline_reads = False
        self.inference = InferenceLimits(settings.inference_per_account)
        """The inference pool and the per-account limit (:mod:`assay.server.fairness`)."""

    def open(self) -> None:
        """Open the core (unless one was given) and resume interrupted work."""
        self.settings.check_sandbox()
        if self._core is None:
            self._core = build_core(self.settings)
        try:
            self._core.resume()
        except BaseException:
            self.close()
            raise
        self._authenticator = Authenticator(
            self._core.signer, RevocationList(self.settings.revoked_tokens_path)
        )
        self._urls = ArtifactURLSigner(
            self._core.signer,
            lifetime=self.settings.signed_url_seconds,
            storage=self._core.storage,
        )
        url = sa.make_url(self._core.store.url)
        self._inline_reads = url.get_backend_name() == "sqlite" and url.database not in (
            None,
            "",
            ":memory:",
        )

    def close(self) -> None:
        """Close the core if this server opened it (running workflows get
        ``shutdown_timeout`` seconds; what is left resumes at the next start). The pipelines
        opened here are let go first (their logs flushed)."""
        with self._pipelines_lock:
            pipelines, self._pipelines = self._pipelines, None
        if pipelines is not None:
            pipelines.close()
        if self._core is not None and self.owns_core:
            _stop_workflows(self._core, self.settings.shutdown_timeout)
            self._core.close()
            self._core = None

    def _require(self, value: Any) -> Any:
        if value is None:
            raise errors.UnavailableError("the server is starting or stopping", retry_after=1)
        return value

    async def read(self, read: Callable[[], T]) -> T:
        """``read()``, a call that only reads one or a few records by id: on the event loop
        when the store is a SQLite file, in the thread pool otherwise.

        An indexed SQLite read takes ~0.1 ms and, in WAL mode, never waits for a writer; the
        hop to the thread pool and back costs as much again, and on a busy server the threads
        only contend for the GIL. A database server (a network round trip) or an in-memory
        database (one connection that writers hold) would stall the loop: those go to the
        pool. Writes always go to the pool (they wait for the write lock).
        """
        if self._inline_reads:
            return read()
        return await anyio.to_thread.run_sync(read)

    @property
    def core(self) -> PlatformCore:
        core: PlatformCore = self._require(self._core)
        return core

    @property
    def pipelines(self) -> Any:
        """The server's pipelines (:class:`assay.server.routes.pipelines.ServedPipelines`),
        opened on first use."""
        core = self.core
        with self._pipelines_lock:
            if self._pipelines is None:
                from assay.server.routes.pipelines import ServedPipelines

                self._pipelines = ServedPipelines(core)
            return self._pipelines

    @property
    def authenticator(self) -> Authenticator:
        authenticator: Authenticator = self._require(self._authenticator)
        return authenticator

    @property
    def urls(self) -> ArtifactURLSigner:
        urls: ArtifactURLSigner = self._require(self._urls)
        return urls


def server_state(request: Request) -> ServerState:
    """The :class:`ServerState` of the app serving ``request``."""
    state: ServerState = request.app.state.assay
    return state


class _BearerCaller(HTTPBearer):
    """The bearer-token security scheme (as the OpenAPI document declares it) that is also the
    dependency verifying the caller: one dependency per request, not a scheme dependency
    beneath the caller's."""

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        return caller(request)


def caller(request: Request) -> Principal:
    """The verified caller of ``request`` (401 without a valid token)."""
    return server_state(request).authenticator.authenticate(request.headers.get("authorization"))


_bearer = _BearerCaller(
    auto_error=False,
    scheme_name="HTTPBearer",
    description="An API token (`assay token create`), or a session token for inference calls.",
)

#: A route parameter that is the verified caller.
Caller = Annotated[Principal, Security(_bearer)]


#: A route parameter that is the server's state.
async def _state(request: Request) -> ServerState:
    # async: a plain function dependency would cost a hop to the thread pool per request
    return server_state(request)


State = Annotated[ServerState, Depends(_state)]


def base_url(request: Request, state: ServerState) -> str:
    """Where clients reach this server (:meth:`ServerSettings.signed_url_base`); the URL of
    the request only on a single-user server that has no other."""
    base = state.settings.signed_url_base()
    if base is None:
        if state.settings.multi_user:  # check_public_url refused to start: never here
            raise errors.PlatformError("a multi-user server has no public URL")
        return str(request.base_url).rstrip("/")
    return base


def json_response(
    value: SchemaModel | list[Any] | dict[str, Any], *, status_code: int = 200
) -> Response:
    """A JSON response of an Assay model (wire names, no nulls) or a list of them, in the
    wire format the request asked for (:mod:`assay.server.wire`)."""
    context = wire_context()
    if isinstance(value, SchemaModel):
        body = value.model_dump_json(context=context).encode()
    elif isinstance(value, list):
        body = b"[" + b",".join(_dump(v, context) for v in value) + b"]"
    else:
        import json

        body = json.dumps(value).encode()
    return Response(body, status_code=status_code, media_type="application/json")


def _dump(value: Any, context: dict[str, Any] | None) -> bytes:
    if isinstance(value, SchemaModel):
        return value.model_dump_json(context=context).encode()
    import json

    return json.dumps(value).encode()
