"""A real ``assay serve`` on a free loopback port, for the end-to-end tests (``test_serve.py``,
``tests/compat``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assay_command() -> list[str]:
    """The ``assay`` console script of the running environment (``python -m assay`` when it
    has none)."""
    script = Path(sys.executable).with_name("assay")
    return [str(script)] if script.exists() else [sys.executable, "-m", "assay"]


@dataclass(frozen=True)
class Served:
    """A running ``assay serve``."""

    url: str
    """Its base URL, e.g. ``http://127.0.0.1:8765`` (the API is under ``/v0``)."""
    data: Path
    """Its data directory."""
    log: Path
    """What it printed."""

    def token(self, account: str) -> str:
        """An API token for ``account`` (``assay token create``)."""
        made = subprocess.run(
            [*assay_command(), "token", "create", "--data", str(self.data), "--account", account],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return made.stdout.strip()


@contextmanager
def serve(
    directory: Path,
    *,
    start_timeout: float = 60,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Served]:
    """``assay serve`` (its defaults: SQLite, local storage, worker processes, multi-user) on a
    free port, with its data and log in ``directory``; stopped with SIGINT, which must end it
    cleanly. ``args``: more flags; ``env``: more environment variables."""
    port, data, log_path = free_port(), directory / "data", directory / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*assay_command(), "serve", "--port", str(port), "--data", str(data), *(args or [])],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ASSAY_LOG_LEVEL": "warning", **(env or {})},
            cwd=directory,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
            yield Served(url, data, log_path)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=60) == 0, log_path.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
