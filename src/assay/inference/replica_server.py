"""One replica of an in-process service class, served over HTTP.

This is the process the ``python`` runner (a user's model class from a Module) and the
``huggingface`` runner start for each replica of a session. It speaks the replica HTTP protocol
of :mod:`assay.inference.protocol` exactly; the parent supervises it with
:class:`assay.inference.replicas.ProcessReplica`. Design notes: ``docs/design/replicas.md``.

:func:`create_app` is a raw ASGI application (no framework on the hot path):

- the service object is built by ``load()`` in a background thread, started by the lifespan
  startup event or by the first request (httpx's ``ASGITransport`` runs no lifespan), so
  ``GET /ready`` answers ``503`` while it loads, ``200`` once loaded, and ``500`` with the load
  error (``{"ready": false, "detail": "<ExceptionType>: message"}``) if loading failed;
- calls into the service run in worker threads (one by default: user classes are rarely
  thread-safe), so the event loop keeps answering ``/ready`` while a call runs. The threads are
  daemon threads: a call that never returns cannot keep the process alive after ``SIGTERM``;
- error mapping: unknown endpoint → ``404``; the service raised ``ValueError`` (which includes
  :class:`assay.errors.ValidationError`), ``KeyError`` or ``TypeError`` → ``400``;
  :class:`assay.errors.UnavailableError` → ``503`` with ``Retry-After``; anything else, or a
  reply that is not a list of JSON objects → ``500``. Every error body is ``{"detail": ...}``.

Command line (run as ``python -m assay.inference.replica_server``)::

    --target module.path:ClassName  [--path DIR ...]  [--arg key=<json> ...]
    [--host 127.0.0.1]  [--port 0]  [--threads 1]

Each ``--path`` is put in front of ``sys.path``; the class is instantiated with the ``--arg``
keyword arguments. With ``--port 0`` a free port is chosen; in every case, once the server
listens, the process prints exactly one line ``ASSAY_REPLICA_LISTENING <port>`` to stdout.
Exit codes: ``0`` after ``SIGTERM``/``SIGINT``, ``2`` bad command line or no replica secret,
``3`` the target cannot be imported, ``4`` the service failed to load (traceback on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import importlib
import json
import math
import os
import queue
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from assay.errors import UnavailableError, ValidationError
from assay.inference.protocol import (
    BATCH_PATH,
    INFER_PATH,
    READY_PATH,
    REPLICA_SECRET_ENV,
    endpoints_of,
)

__all__ = [
    "EXIT_BAD_TARGET",
    "EXIT_LOAD_FAILED",
    "LISTENING_PREFIX",
    "ReplicaApp",
    "TargetImportError",
    "create_app",
    "main",
    "resolve_target",
]

#: The line (followed by a space and the port) the replica prints once it listens.
LISTENING_PREFIX = "ASSAY_REPLICA_LISTENING"
#: Exit code when ``--target`` cannot be imported.
EXIT_BAD_TARGET = 3
#: Exit code when the service's constructor (``load()``) raised.
EXIT_LOAD_FAILED = 4

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")

_JSON_HEADERS = [(b"content-type", b"application/json")]
_EXPECTED_REPLY = "a list of JSON objects (dicts), e.g. [{'text': '...'}]"


class _Reply(Exception):
    """Raised inside the request handler to answer with an error status and detail."""

    def __init__(self, status: int, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class _Workers:
    """Daemon threads that run the calls into the service, one at a time per thread.

    Not :func:`asyncio.to_thread`: the default executor's threads are joined at interpreter
    exit, so one hung ``infer`` call would keep a terminated replica alive until ``SIGKILL``.
    """

    def __init__(self, threads: int) -> None:
        self._count = threads
        self.count = threads
        self._queue: queue.SimpleQueue[
            tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]
        ] = queue.SimpleQueue()
        self._started = False
        self._lock = threading.Lock()

    async def run(self, call: Callable[[], T]) -> T:
        if not self._started:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((call, future, loop))
        return await future

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            for i in range(self._count):
                name = f"assay-replica-worker-{i}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
            self._started = True

    def _work(self) -> None:
        while True:
            call, future, loop = self._queue.get()
            if future.cancelled():  # the client went away while the call was queued
                continue
            result: Any = None
            error: BaseException | None = None
            try:
                result = call()
            except Exception as exc:
                error = exc
            except BaseException as exc:  # SystemExit & co. must not kill the event loop
                error = RuntimeError(f"the service raised {type(exc).__name__}: {exc}")
            with contextlib.suppress(RuntimeError):  # a closed loop: the server is stopping
                loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _describe(exc: BaseException) -> str:
    """``"<ExceptionType>: message"``, the form every error detail of a replica uses."""
    return f"{type(exc).__name__}: {exc}"


class ReplicaApp:
    """The ASGI application of one replica; build it with :func:`create_app`."""

    def __init__(
        self,
        load: Callable[[], object],
        *,
        secret: str,
        threads: int = 1,
        on_load_error: Callable[[BaseException, str], None] | None = None,
    ) -> None:
        if not secret:
            raise ValidationError(
                "the replica secret is empty: give the replica a secret in the "
                f"{REPLICA_SECRET_ENV} environment variable",
                field=REPLICA_SECRET_ENV,
            )
        if threads < 1:
            raise ValidationError(
                f"threads must be at least 1, got {threads}", field="threads", value=threads
            )
        self._load = load
        self._expected_auth = b"Bearer " + secret.encode()
        self._on_load_error = on_load_error
        self._workers = _Workers(threads)
        self._lock = threading.Lock()
        self._loading: threading.Thread | None = None
        self._loaded = threading.Event()
        self._service: Any = None
        self._endpoints: list[str] = []
        self._load_error: str | None = None

    # -- loading ---------------------------------------------------------------------------

    def start_loading(self) -> None:
        """Start building the service in a background thread (once; later calls do nothing)."""
        with self._lock:
            if self._loading is not None:
                return
            self._loading = threading.Thread(
                target=self._load_service, name="assay-replica-load", daemon=True
            )
            self._loading.start()

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until loading has finished (successfully or not); ``False`` on timeout."""
        return self._loaded.wait(timeout)

    @property
    def load_error(self) -> str | None:
        """``"<ExceptionType>: message"`` if loading failed, else ``None``."""
        return self._load_error

    def _load_service(self) -> None:
        try:
            service = self._load()
            endpoints = endpoints_of(service)
        except BaseException as exc:
            self._load_error = _describe(exc)
            try:
                if self._on_load_error is not None:
                    self._on_load_error(exc, "".join(traceback.format_exception(exc)))
            finally:
                self._loaded.set()
            return
        self._service = service
        self._endpoints = endpoints
        self._loaded.set()

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_loading()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytearray()
        while True:  # always drain the body, so that keep-alive connections stay usable
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if self._loading is None:
            self.start_loading()
        try:
            status, payload = await self._route(scope, bytes(body))
        except _Reply as reply:
            headers = list(_JSON_HEADERS)
            if reply.retry_after is not None:
                seconds = max(1, math.ceil(reply.retry_after))
                headers.append((b"retry-after", str(seconds).encode()))
            await _respond(send, reply.status, _dumps({"detail": reply.detail}), headers)
            return
        await _respond(send, status, payload, _JSON_HEADERS)

    async def _route(self, scope: Scope, body: bytes) -> tuple[int, bytes]:
        self._check_secret(scope)
        path: str = scope["path"]
        method: str = scope["method"]
        if path == READY_PATH:
            _allow(method, "GET", path)
            return self._ready()
        if path.startswith(INFER_PATH):
            _allow(method, "POST", path)
            return await self._infer(path[len(INFER_PATH) :], body)
        if path.startswith(BATCH_PATH):
            _allow(method, "POST", path)
            return await self._batch(path[len(BATCH_PATH) :], body)
        raise _Reply(
            404,
            f"no route {method} {path}: a replica answers GET {READY_PATH}, "
            f"POST {INFER_PATH}{{endpoint}} and POST {BATCH_PATH}{{endpoint}}",
        )

    def _check_secret(self, scope: Scope) -> None:
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
                break
        if not hmac.compare_digest(given, self._expected_auth):
            raise _Reply(401, "missing or wrong replica secret")

    def _ready(self) -> tuple[int, bytes]:
        if not self._loaded.is_set():
            raise _Reply(503, "the service is still loading", retry_after=1)
        if self._load_error is not None:
            return 500, _dumps({"ready": False, "detail": self._load_error})
        return 200, self._declared

    @property
    def _declared(self) -> bytes:
        """``{"ready": true, "threads": N, "batch": bool}``: what this replica can take at
        once, so that a client sends it no more than that (and batches only where the service
        answers a batch in one call)."""
        batch = callable(getattr(self._service, "infer_batch", None))
        return _dumps({"ready": True, "threads": self._workers.count, "batch": batch})

    def _loaded_service(self, endpoint: str) -> Any:
        if not self._loaded.is_set():
            raise _Reply(503, "the service is still loading; retry later", retry_after=1)
        if self._load_error is not None:
            raise _Reply(500, f"the service failed to load: {self._load_error}")
        if not endpoint or (self._endpoints and endpoint not in self._endpoints):
            raise _Reply(
                404,
                f"unknown endpoint {endpoint!r}: the endpoints are {self._endpoints}"
                if self._endpoints
                else "the endpoint is missing: use POST /infer/{endpoint}",
            )
        return self._service

    async def _infer(self, endpoint: str, body: bytes) -> tuple[int, bytes]:
        service = self._loaded_service(endpoint)
        request = _parse(body)
        if not isinstance(request, dict):
            raise _Reply(
                400,
                f"the body of POST {INFER_PATH}{endpoint} must be a JSON object, "
                f"got a JSON {_json_type(request)}",
            )
        outputs = await self._call(lambda: service.infer(endpoint, request))
        _check_outputs(outputs, f"infer({endpoint!r}, request)")
        return 200, _dumps(outputs)

    async def _batch(self, endpoint: str, body: bytes) -> tuple[int, bytes]:
        service = self._loaded_service(endpoint)
        requests = _parse(body)
        if not isinstance(requests, list) or not all(isinstance(r, dict) for r in requests):
            raise _Reply(
                400,
                f"the body of POST {BATCH_PATH}{endpoint} must be a JSON array of objects, "
                f"got a JSON {_json_type(requests)}"
                + (" with items that are not objects" if isinstance(requests, list) else ""),
            )
        infer_batch = getattr(service, "infer_batch", None)
        if infer_batch is not None:
            results = await self._call(lambda: infer_batch(endpoint, requests))
            what = f"infer_batch({endpoint!r}, requests)"
        else:
            results = await self._call(lambda: [service.infer(endpoint, r) for r in requests])
            what = f"infer({endpoint!r}, request)"
        if not isinstance(results, list) or len(results) != len(requests):
            got = (
                f"a list of {len(results)} results"
                if isinstance(results, list)
                else type(results).__name__
            )
            raise _Reply(
                500,
                f"the service's {what} returned {got} for {len(requests)} requests; "
                "expected one list of outputs per request, in order",
            )
        for outputs in results:
            _check_outputs(outputs, what)
        return 200, _dumps(results)

    async def _call(self, call: Callable[[], T]) -> T:
        try:
            return await self._workers.run(call)
        except UnavailableError as exc:
            retry = exc.retry_after if exc.retry_after is not None else 1
            raise _Reply(503, str(exc), retry_after=retry) from exc
        except ValidationError as exc:
            raise _Reply(400, str(exc)) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise _Reply(400, _describe(exc)) from exc
        except Exception as exc:
            traceback.print_exception(exc, file=sys.stderr)
            raise _Reply(500, _describe(exc)) from exc


def create_app(
    load: Callable[[], object],
    *,
    secret: str | None = None,
    threads: int = 1,
    on_load_error: Callable[[BaseException, str], None] | None = None,
) -> ReplicaApp:
    """The ASGI app serving the service that ``load()`` builds.

    ``secret`` defaults to the ``ASSAY_REPLICA_SECRET`` environment variable; ``threads`` is
    how many calls into the service may run at once (raise it only for a thread-safe service,
    or one that releases the GIL); ``on_load_error(exc, traceback_text)`` is called from the
    loading thread if ``load()`` raises.
    """
    if secret is None:
        secret = os.environ.get(REPLICA_SECRET_ENV, "")
    return ReplicaApp(load, secret=secret, threads=threads, on_load_error=on_load_error)


async def _respond(
    send: Send, status: int, payload: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    headers = [*headers, (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _allow(method: str, allowed: str, path: str) -> None:
    if method != allowed:
        raise _Reply(405, f"{path} accepts {allowed}, not {method}")


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise _Reply(400, f"the body is not valid JSON: {exc}") from exc


def _dumps(value: Any) -> bytes:
    try:
        return json.dumps(
            value, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
    except (TypeError, ValueError) as exc:
        raise _Reply(
            500, f"the service's reply cannot be written as JSON: {_describe(exc)}"
        ) from exc


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _check_outputs(outputs: Any, what: str) -> None:
    if not isinstance(outputs, list):
        raise _Reply(
            500,
            f"the service's {what} returned {type(outputs).__name__}; expected {_EXPECTED_REPLY}",
        )
    for item in outputs:
        if not isinstance(item, dict):
            raise _Reply(
                500,
                f"the service's {what} returned a list holding {type(item).__name__}; "
                f"expected {_EXPECTED_REPLY}",
            )


# -- the process ---------------------------------------------------------------------------


class TargetImportError(Exception):
    """``--target`` names a module or class that cannot be imported."""


def resolve_target(target: str, paths: list[str]) -> Callable[..., object]:
    """The class (or factory) ``module.path:ClassName`` names. ``paths`` only appear in the
    error message; put them on ``sys.path`` first."""
    module_name, sep, attr = target.partition(":")
    where = f"searched the --path directories {paths} and the interpreter's sys.path"
    if not sep or not module_name or not attr:
        raise TargetImportError(f"--target must be module.path:ClassName, got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise TargetImportError(
                f"cannot import module {module_name!r} for class {attr!r}: no module named "
                f"{exc.name!r} ({where}; is the Module's directory given with --path?)"
            ) from exc
        raise TargetImportError(
            f"importing module {module_name!r} (for class {attr!r}) failed: {_describe(exc)} "
            f"({where})\n{''.join(traceback.format_exception(exc))}"
        ) from exc
    except BaseException as exc:
        raise TargetImportError(
            f"importing module {module_name!r} (for class {attr!r}) failed: {_describe(exc)}\n"
            f"{''.join(traceback.format_exception(exc))}"
        ) from exc
    found: Any = module
    for part in attr.split("."):
        if not hasattr(found, part):
            defined = sorted(n for n, v in vars(module).items() if isinstance(v, type))
            raise TargetImportError(
                f"module {module_name!r} ({getattr(module, '__file__', '?')}) has no class "
                f"{attr!r}; the classes it defines are {defined} ({where})"
            )
        found = getattr(found, part)
    if not callable(found):
        raise TargetImportError(
            f"{target!r} is a {type(found).__name__}, not a class: --target must name a class"
        )
    result: Callable[..., object] = found
    return result


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m assay.inference.replica_server",
        description="Serve one replica of a service class over Assay's replica HTTP protocol. "
        f"The replica secret is read from {REPLICA_SECRET_ENV}.",
    )
    parser.add_argument("--target", required=True, help="module.path:ClassName to serve")
    parser.add_argument(
        "--path", action="append", default=[], help="directory to put in front of sys.path"
    )
    parser.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="keyword argument for the class, its value as JSON (repeatable)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks one")
    parser.add_argument(
        "--fd",
        type=int,
        default=None,
        help="a listening socket inherited from the parent, to serve on instead of --host and "
        "--port (a sandboxed replica, which has no network of its own)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="calls into the service that may run at once"
    )
    args = parser.parse_args(argv)
    kwargs: dict[str, Any] = {}
    for item in args.arg:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            parser.error(f"--arg must be key=<json> with an identifier key, got {item!r}")
        try:
            kwargs[key] = json.loads(raw)
        except ValueError as exc:
            parser.error(f"--arg {key}: the value is not JSON ({exc}): {raw!r}")
    args.kwargs = kwargs
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one replica until ``SIGTERM``/``SIGINT``; the process exit code (see the module
    docstring)."""
    import uvicorn  # only the replica process needs the server

    args = _parse_args(argv)
    secret = os.environ.get(REPLICA_SECRET_ENV, "")
    if not secret:
        print(f"replica: no replica secret: set {REPLICA_SECRET_ENV}", file=sys.stderr)
        return 2
    for path in reversed(args.path):
        sys.path.insert(0, path)
    try:
        factory = resolve_target(args.target, args.path)
    except TargetImportError as exc:
        print(f"replica: {exc}", file=sys.stderr, flush=True)
        return EXIT_BAD_TARGET

    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
    else:
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP; without it Nagle + delayed ACKs cost ~40 ms per request (~23 req/s).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
    port: int = sock.getsockname()[1]
    exit_code = 0

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                # Straight to the file descriptor, in one write: the service may be printing
                # from its loading thread, and concurrent writes through sys.stdout can be lost.
                os.write(1, f"{LISTENING_PREFIX} {port}\n".encode())

    def on_load_error(exc: BaseException, text: str) -> None:
        nonlocal exit_code
        print(f"replica: loading {args.target} failed:\n{text}", file=sys.stderr, flush=True)
        exit_code = EXIT_LOAD_FAILED
        server.should_exit = True

    kwargs = args.kwargs
    app = create_app(
        lambda: factory(**kwargs),
        secret=secret,
        threads=args.threads,
        on_load_error=on_load_error,
    )
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        loop="auto",
        timeout_graceful_shutdown=3,
    )
    server = Server(config)
    # uvicorn re-raises the signal that stopped it once it has shut down; with these handlers
    # in place that re-raise is a no-op and a terminated replica exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        sock.close()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
