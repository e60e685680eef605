"""``assay demo --serve``: serve the demo's data directory with the Assay server, so that its
results can be browsed over the REST API, with an API token for the demo's account."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

__all__ = ["TOKEN_DAYS", "serve"]

#: How long the printed API token stays valid, in days.
TOKEN_DAYS = 1.0


def serve(
    data: str | os.PathLike[str],
    *,
    account: str,
    host: str | None = None,
    port: int | None = None,
    safety_cases: Sequence[tuple[str, str]] = (),
    out: IO[str] | None = None,
) -> None:
    """Serve ``data`` with uvicorn until interrupted (as ``assay serve --data`` does), after
    printing the URL, an API token for ``account`` and a few commands to try on the
    ``safety_cases`` (``(name, id)`` pairs). Workflows run in background threads unless
    ``ASSAY_EXECUTOR`` says otherwise."""
    import uvicorn

    from assay.core.tokens import TokenSigner
    from assay.server import ServerSettings, create_app, issue_token

    executor = None if os.environ.get("ASSAY_EXECUTOR") else "threads"
    settings = ServerSettings.from_env(data_dir=Path(data), host=host, port=port, executor=executor)
    token = issue_token(TokenSigner(settings.secret()), account=account, expires=TOKEN_DAYS)
    url = f"http://{settings.host}:{settings.port}"

    def say(line: str) -> None:
        print(line, file=out or sys.stdout, flush=True)

    say(f"Serving {settings.root} at {url}/v0 (OpenAPI: {url}/openapi.json; Ctrl-C stops it).")
    say(f"API token for account {account!r} (valid {TOKEN_DAYS:g} day):")
    say(f"  {token}")
    say("Try:")
    say(f'  export ASSAY_API_ENDPOINT={url} ASSAY_API_TOKEN="{token}"')
    say("  assay safetycases list")
    say('  curl -H "Authorization: Bearer $ASSAY_API_TOKEN" "$ASSAY_API_ENDPOINT/v0/scores"')
    for name, id in safety_cases:
        say(
            f'  curl -H "Authorization: Bearer $ASSAY_API_TOKEN" '
            f'"$ASSAY_API_ENDPOINT/v0/safetycases/{id}/document" > {name}.html'
        )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
    )
