"""``create_app(settings)``: the Assay REST API as a FastAPI application.

The app serves the platform core (DESIGN §2) under ``/v0`` (see ``docs/design/server.md`` for
every route and the access model). At start-up it opens the core — the embedded default on
``settings.data_dir``, with workflows in a pool of worker processes (``settings.executor``) — and resumes the work a previous
process left unfinished; at shutdown it closes it. Blocking core calls run in FastAPI's thread
pool, so the event loop stays free.

    import uvicorn
    from assay.server import ServerSettings, create_app

    uvicorn.run(create_app(ServerSettings(data_dir="assay-data")), port=8000)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from assay import __version__
from assay.core.platform import PlatformCore
from assay.server.errors import install_error_handlers
from assay.server.limits import BodyLimit
from assay.server.routes import routes
from assay.server.settings import ServerSettings
from assay.server.signed_urls import STORAGE_PREFIX
from assay.server.state import ServerState
from assay.server.ui import install_ui
from assay.server.wire import WireFormat

__all__ = ["create_app"]

DESCRIPTION = """\
The REST API of Assay, an open platform for auditing AI systems.

Every route needs `Authorization: Bearer <token>`: an API token (`assay token create`) whose
grants say what it may do, or — for inference calls — a session token. Errors are
`{"detail": "..."}` with the status code that says what kind of error it is.
"""


def create_app(
    settings: ServerSettings | None = None, *, core: PlatformCore | None = None
) -> FastAPI:
    """The Assay API application.

    ``settings`` default to :meth:`ServerSettings.from_env`. ``core`` serves an existing
    platform core instead of opening one on ``settings.data_dir`` (tests, embedding); the app
    then resumes its work at start-up but leaves closing it to its owner.
    """
    settings = settings if settings is not None else ServerSettings.from_env()
    settings.check_public_url()
    state = ServerState(settings, core)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(state.open)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(state.close)

    app = FastAPI(
        title="Assay",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,  # the UI serves /docs and /redoc from local assets (ui/api_docs.py)
        redoc_url=None,
    )
    app.state.assay = state
    install_error_handlers(app)
    app.router.routes.extend(routes())
    install_ui(app)  # the web UI at the site root (docs/design/ui.md)
    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        upload_limit=settings.max_upload_bytes,
        upload_prefix=STORAGE_PREFIX + "/",
    )
    app.add_middleware(WireFormat)
    return app
