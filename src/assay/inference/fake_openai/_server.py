"""Serving the fake OpenAI-compatible app: in a background thread, or from the command line.
uvicorn is imported only when a server starts."""

from __future__ import annotations

import argparse
import socket
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from assay import errors
from assay.inference.fake_openai._app import FakeOpenAI, create_app

if TYPE_CHECKING:
    import uvicorn

__all__ = ["FakeOpenAIServer", "main"]


class FakeOpenAIServer:
    """Serves a :class:`FakeOpenAI` app with uvicorn on ``host`` in a daemon thread.

    Give an ``app``, or the options of :func:`create_app`. ``port=0`` (the default) picks a
    free port. Use it as a context manager (or call :meth:`start` and :meth:`stop`); inside,
    :attr:`url` is e.g. ``http://127.0.0.1:54321`` and :attr:`requests` counts the requests
    served.
    """

    def __init__(
        self,
        app: FakeOpenAI | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 10.0,
        **options: Any,
    ) -> None:
        if app is not None and options:
            raise errors.ValidationError(
                f"give either an app or the options of create_app(), not both "
                f"(got app and {sorted(options)})"
            )
        self.app = app if app is not None else create_app(**options)
        self.host = host
        self.startup_timeout = startup_timeout
        self._port = port
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        """The port it listens on (known once started)."""
        return self._port

    @property
    def url(self) -> str:
        """The server's root URL, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def base_url(self) -> str:
        """:attr:`url` plus ``/v1``: what OpenAI clients take as their base URL."""
        return f"{self.url}/v1"

    @property
    def requests(self) -> int:
        """The number of HTTP requests received so far."""
        return self.app.requests

    def start(self) -> None:
        """Bind, start serving in a background thread, and return once it accepts requests."""
        if self._thread is not None:
            raise errors.ConflictError(f"the fake OpenAI server at {self.url} is already running")
        import uvicorn

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio turns Nagle off only for sockets that say they are TCP,
        # and without that every reply (headers, then body) waits ~40 ms for a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.bind((self.host, self._port))
        except OSError as exc:
            sock.close()
            raise errors.UnavailableError(
                f"cannot listen on {self.host}:{self._port} ({exc}); choose another port, or "
                "port=0 for a free one"
            ) from None
        self._socket = sock
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=5,
        )
        started = threading.Event()
        self._server = _server(config, started)
        self._error = None
        self._thread = threading.Thread(
            target=self._serve, args=(started,), name=f"fake-openai:{self._port}", daemon=True
        )
        self._thread.start()
        if not started.wait(self.startup_timeout) or not self._server.started:
            error = self._error
            self.stop()
            raise errors.UnavailableError(
                f"the fake OpenAI server did not start within {self.startup_timeout} s"
                + (f": {error!r}" if error else "")
            )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (open connections are closed) and wait for the thread to end."""
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(timeout)
        if sock is not None:
            sock.close()

    def _serve(self, started: threading.Event) -> None:
        assert self._server is not None and self._socket is not None
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # reported by start(); a thread must not die noisily
            self._error = exc
        finally:
            started.set()

    def __enter__(self) -> FakeOpenAIServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _server(config: uvicorn.Config, started: threading.Event) -> uvicorn.Server:
    """A uvicorn server that sets ``started`` once it accepts connections."""
    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            started.set()

    return _Server(config)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the fake OpenAI-compatible API in the foreground until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m assay.inference.fake_openai",
        description="Serve a fake OpenAI-compatible API (for tests and demos).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--model", default="fake-model", help="the model name it serves")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    parser.add_argument("--seed", type=int, default=0, help="varies the canned replies")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per completion")
    parser.add_argument("--fail-every", type=int, default=0, help="503 on every Nth request")
    parser.add_argument(
        "--refusal-trigger",
        action="append",
        dest="refusal_triggers",
        help="a word that makes it refuse (repeatable; default: forbidden)",
    )
    args = parser.parse_args(argv)
    import uvicorn

    try:
        app = create_app(
            model=args.model,
            api_key=args.api_key,
            seed=args.seed,
            latency=args.latency,
            fail_every=args.fail_every,
            refusal_triggers=args.refusal_triggers or ("forbidden",),
        )
    except errors.ValidationError as exc:
        parser.exit(2, f"error: {exc}\n")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", lifespan="off")
    return 0
