"""``assay serve``: run the Assay server (the REST API) with uvicorn.

Every flag has an ``ASSAY_*`` environment variable (see ``docs/design/server.md``); a flag
given wins over its variable. FastAPI and uvicorn are imported only when the command runs, so
``assay --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_serve_parser", "run_serve"]


def add_serve_parser(sub: Any) -> None:
    """Add ``serve`` to the ``assay`` command's sub-commands."""
    serve = sub.add_parser(
        "serve",
        help="run the Assay server (the REST API under /v0)",
        description="Serve the platform in --data over HTTP: the REST API under /v0, its "
        "OpenAPI document at /openapi.json. Workflows run in the server's background; work "
        "a previous server left unfinished resumes at start-up. Make API tokens with "
        "'assay token create'.",
    )
    serve.add_argument("--host", help="address to listen on (env: ASSAY_HOST; default: 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, help="TCP port to listen on (env: ASSAY_PORT; default: 8000)"
    )
    serve.add_argument(
        "--data",
        help="directory of the platform's state (env: ASSAY_DATA_DIR; default: assay-data)",
    )
    serve.add_argument(
        "--database-url",
        help="SQLAlchemy URL of the entity database (env: ASSAY_DATABASE_URL; default: SQLite "
        "in --data)",
    )
    serve.add_argument(
        "--storage",
        help="where artifacts are kept: s3://BUCKET[/PREFIX] for an S3-compatible bucket "
        "(credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; server: ASSAY_S3_ENDPOINT_URL) "
        "or a directory (env: ASSAY_STORAGE; default: --data)",
    )
    serve.add_argument(
        "--public-url",
        help="base URL clients reach the server at, for signed artifact URLs "
        "(env: ASSAY_PUBLIC_URL; default: http://HOST:PORT on a loopback host; required by a "
        "multi-user server on any other host)",
    )
    serve.add_argument(
        "--executor",
        choices=["threads", "processes", "ray"],
        help="where workflows run: background threads, a pool of worker processes, or a Ray "
        "cluster (env: ASSAY_EXECUTOR; default: processes)",
    )
    serve.add_argument(
        "--ray-address",
        help="the Ray cluster of --executor ray: HOST:PORT of its head, or auto (env: "
        "ASSAY_RAY_ADDRESS; default: RAY_ADDRESS, else a Ray instance of the server's own)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="the most worker processes of --executor processes (env: ASSAY_WORKERS; "
        "default: one per CPU, at most 8)",
    )
    serve.add_argument(
        "--single-user",
        action="store_true",
        default=None,
        help="every account belongs to one user (or users who trust each other): user code "
        "runs unsandboxed, services may be on private addresses, credentials may name any "
        "server variable (env: ASSAY_SINGLE_USER; default: multi-user, which needs the "
        "bubblewrap sandbox)",
    )
    serve.add_argument(
        "--sandbox",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run user code in the bubblewrap sandbox (env: ASSAY_SANDBOX; default: on "
        "unless --single-user)",
    )
    serve.add_argument(
        "--allowed-hosts",
        help="comma-separated hosts, addresses or networks that http/openai services may be "
        "on beside public addresses (env: ASSAY_ALLOWED_HOSTS; default: none, so loopback "
        "and private addresses are refused on a multi-user server)",
    )
    serve.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (env: ASSAY_LOG_LEVEL; default: info)",
    )


def run_serve(args: argparse.Namespace) -> int:
    """Run the server until interrupted; the exit status."""
    from assay.server import ServerSettings, create_app

    settings = ServerSettings.from_env(
        host=args.host,
        port=args.port,
        data_dir=args.data,
        database_url=args.database_url,
        storage=args.storage,
        public_url=args.public_url,
        executor=args.executor,
        ray_address=args.ray_address,
        workers=args.workers,
        log_level=args.log_level,
        single_user=args.single_user,
        sandbox=args.sandbox,
        allowed_hosts=args.allowed_hosts,
    )
    settings.check_sandbox()
    settings.check_public_url()
    settings.check_storage()
    if settings.executor == "ray":  # a bad address fails here, at once, not in the app
        from assay.engine.ray_executor import check_address

        check_address(settings.ray_address, "--ray-address / ASSAY_RAY_ADDRESS")
    import uvicorn

    print(
        f"assay: serving {settings.root} at http://{settings.host}:{settings.port}/v0 "
        "(OpenAPI: /openapi.json, docs: /docs; web UI: /, sign in with an API token)",
        file=sys.stderr,
        flush=True,
    )
    app = create_app(settings)
    # what start-up made (modules, the app) lives as long as the server: left out of the
    # garbage collector's full passes, which otherwise take ~180 ms a page every so often
    import gc

    gc.freeze()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
    )
    return 0
