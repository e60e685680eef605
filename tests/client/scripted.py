"""A tiny HTTP server that answers from a script: for each ``METHOD /path`` a list of answers,
used in turn (the last one repeats). It records every request, so tests can count tries."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    """One scripted answer."""

    status: int = 200
    body: bytes | Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    send_only: int | None = None
    """Declare the whole body's Content-Length but send only this many bytes, then close."""

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


class Script:
    def __init__(self) -> None:
        self.answers: dict[str, list[Answer]] = {}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.url = ""

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.answers[f"{method} {path}"] = list(answers)

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _, _ in self.requests if (m, p.split("?")[0]) == (method, path))

    def next(self, method: str, path: str) -> Answer:
        queue = self.answers.get(f"{method} {path.split('?')[0]}")
        if not queue:
            return Answer(404, {"detail": f"no script for {method} {path}"})
        return queue.pop(0) if len(queue) > 1 else queue[0]


@contextmanager
def scripted_server() -> Iterator[Script]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            script.requests.append((self.command, self.path, dict(self.headers), body))
            answer = script.next(self.command, self.path)
            data = answer.encoded()
            self.send_response(answer.status)
            headers = {"Content-Type": "application/json", **answer.headers}
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            if answer.send_only is not None:
                self.send_header("Connection", "close")
            self.end_headers()
            if answer.send_only is not None:
                self.wfile.write(data[: answer.send_only])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_PATCH = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    script.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield script
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
