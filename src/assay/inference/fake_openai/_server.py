"""Serving the fake OpenAI-compatible app: in a background thread, in a process of its own,
or from the command line. uvicorn (and httpx) are imported only when a server starts."""

from __future__ import annotations

import argparse
import json
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from assay import errors
from assay.inference.fake_openai._app import STATS_PATH, FakeOpenAI, create_app

if TYPE_CHECKING:
    import uvicorn

__all__ = ["FakeOpenAIProcess", "FakeOpenAIServer", "main"]

#: The line ``main`` prints on stdout once it listens (the URL follows).
LISTENING = "fake OpenAI server listening on "


class FakeOpenAIServer:
    """Serves a :class:`FakeOpenAI` app with uvicorn on ``host`` in a daemon thread.

    Give an ``app``, or the options of :func:`create_app`. ``port=0`` (the default) picks a
    free port. Use it as a context manager (or call :meth:`start` and :meth:`stop`); inside,
    :attr:`url` is e.g. ``http://127.0.0.1:54321``, :attr:`requests` counts the requests
    served and :meth:`stats` counts them by outcome. ``exit_after`` is refused here (it would
    end the caller's process): use :class:`FakeOpenAIProcess` for a server that dies.
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
        if self.app.exit_after:
            raise errors.ValidationError(
                f"exit_after={self.app.exit_after} ends the process that serves the app, and a "
                "FakeOpenAIServer serves it in this process: use FakeOpenAIProcess(exit_after="
                f"{self.app.exit_after}, ...) (or python -m assay.inference.fake_openai "
                "--exit-after N), which runs it in a process of its own",
                field="exit_after",
            )
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

    def stats(self) -> dict[str, int]:
        """The request counters by outcome (see :meth:`FakeOpenAI.stats`)."""
        return self.app.stats()

    def start(self) -> None:
        """Bind, start serving in a background thread, and return once it accepts requests."""
        if self._thread is not None:
            raise errors.ConflictError(f"the fake OpenAI server at {self.url} is already running")
        import uvicorn

        sock = _bind(self.host, self._port)
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


class FakeOpenAIProcess:
    """Serves the fake in a process of its own (``python -m assay.inference.fake_openai``), so
    that ``exit_after`` can end it: a service that dies, for tests of what is left behind.

    Takes the options of :func:`create_app` (checked here first). Use it as a context manager
    (or :meth:`start` and :meth:`stop`); :attr:`url` and :attr:`base_url` as for
    :class:`FakeOpenAIServer`, :meth:`stats` reads the counters over HTTP
    (``GET /v1/_stats``), :attr:`returncode` is None while it runs, and :meth:`wait` waits
    for its end (``exit_after`` exits with status 3). The process gets this one's
    ``sys.path``, so it imports Assay from where this process does.
    """

    def __init__(
        self, *, host: str = "127.0.0.1", startup_timeout: float = 30.0, **options: Any
    ) -> None:
        create_app(**options)  # a bad option fails here, not in the child
        self.host = host
        self.startup_timeout = startup_timeout
        self.options = options
        self._process: subprocess.Popen[bytes] | None = None
        self._url = ""

    @property
    def url(self) -> str:
        """The server's root URL, e.g. ``http://127.0.0.1:54321`` (known once started)."""
        return self._url

    @property
    def base_url(self) -> str:
        """:attr:`url` plus ``/v1``: what OpenAI clients take as their base URL."""
        return f"{self._url}/v1"

    @property
    def pid(self) -> int | None:
        """The server process's id (None before :meth:`start`)."""
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        """The process's exit status once it has ended, else None."""
        return None if self._process is None else self._process.poll()

    def start(self) -> None:
        """Start the process and return once it listens."""
        if self._process is not None:
            raise errors.ConflictError(f"the fake OpenAI process at {self.url} is already running")
        code = (
            "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
            "from assay.inference.fake_openai import main; sys.exit(main(sys.argv[2:]))"
        )
        argv = [sys.executable, "-c", code, json.dumps(sys.path), *self._arguments()]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self._process = process
        assert process.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        line = b""
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], deadline - time.monotonic())
            if not ready:
                break
            chunk = process.stdout.readline()
            if not chunk:  # it exited
                break
            line += chunk
        text = line.decode(errors="replace").strip()
        if not text.startswith(LISTENING):
            self.stop()
            raise errors.UnavailableError(
                f"the fake OpenAI process did not start within {self.startup_timeout} s "
                f"(exit status {self.returncode}; its errors are on stderr)"
            )
        self._url = text.removeprefix(LISTENING)

    def stats(self) -> dict[str, int]:
        """The request counters by outcome, read over HTTP (``GET /v1/_stats``)."""
        import httpx

        reply = httpx.get(self._url + STATS_PATH, timeout=10)
        reply.raise_for_status()
        counts: dict[str, int] = reply.json()
        return counts

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end; its exit status."""
        if self._process is None:
            raise errors.ConflictError("the fake OpenAI process was not started")
        return self._process.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """End the process (SIGTERM, then SIGKILL after ``timeout`` s) and reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def _arguments(self) -> list[str]:
        argv = ["--host", self.host, "--port", "0", "--log-level", "warning"]
        for name, value in self.options.items():
            flag = "--" + name.replace("_", "-")
            if name == "refusal_triggers":
                argv += [arg for word in value for arg in ("--refusal-trigger", word)]
            elif value is not None:
                argv += [flag, str(value)]
        return argv

    def __enter__(self) -> FakeOpenAIProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``port=0``: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off only for sockets that say they are TCP,
    # and without that every reply (headers, then body) waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise errors.UnavailableError(
            f"cannot listen on {host}:{port} ({exc}); choose another port, or port=0 for a free one"
        ) from None
    return sock


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
        "--max-concurrent",
        type=int,
        default=0,
        help="429 for a request beyond N in flight (0: no limit)",
    )
    parser.add_argument(
        "--retry-after", type=float, default=1.0, help="the Retry-After seconds of a 429"
    )
    parser.add_argument(
        "--exit-after",
        type=int,
        default=0,
        help="exit with status 3 on the Nth request, unanswered (0: never)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (info: one line per request)",
    )
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
            max_concurrent=args.max_concurrent,
            retry_after=args.retry_after,
            exit_after=args.exit_after,
        )
        sock = _bind(args.host, args.port)
    except (errors.ValidationError, errors.UnavailableError) as exc:
        parser.exit(2, f"error: {exc}\n")
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, log_level=args.log_level, lifespan="off", ws="none")
    print(f"{LISTENING}http://{f'[{host}]' if ':' in host else host}:{port}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
