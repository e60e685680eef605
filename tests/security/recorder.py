"""A service of the attacker's: an HTTP server on loopback that answers every request with 200
and records what it was sent (path and headers), so a test can see which credential reached
it — or that nothing did."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Recorder:
    """What the attacker's service was sent."""

    url: str
    """Its base URL (``http://127.0.0.1:<port>``)."""
    port: int
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    """``(path, headers)`` of every request, in order."""

    def authorizations(self) -> list[str]:
        return [h.get("authorization", "") for _, h in self.requests]


@contextmanager
def recorder() -> Iterator[Recorder]:
    """Run a :class:`Recorder` until the block ends."""
    seen: list[tuple[str, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            body = b'{"text": "ok"}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Recorder(f"http://127.0.0.1:{port}", port, seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
