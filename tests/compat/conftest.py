"""Fixtures for the compatibility tests: the reference client in a virtual environment of its
own, and a real ``assay serve`` on loopback.

The reference client (``dyff-client``, pinned to :data:`DYFF_CLIENT`) is a test-only
dependency that must never share an environment with Assay: the first run makes
``<repo>/.venv-dyff-client`` with ``python -m venv`` and ``pip install``; later runs reuse it
when it holds the pinned version. A failed installation (no network, no index) skips the
tests that need it, with the reason — except under ``CI=true``, where it is an error.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.server.loopback import Served, serve

ROOT = Path(__file__).resolve().parents[2]
#: The reference client the compatibility test runs, exactly this version.
DYFF_CLIENT = "dyff-client==0.27.3"
#: Where its virtual environment lives (ignored by git).
DYFF_VENV = ROOT / ".venv-dyff-client"
#: Seconds allowed for making the environment (a download from the package index).
INSTALL_TIMEOUT = 240


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _installed_version(python: Path) -> str | None:
    """The version of dyff-client installed for ``python``; None when it has none (or the
    environment is broken)."""
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('dyff-client'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{what} failed (exit status {done.returncode}):\n{tail}")


def ensure_dyff_client(venv: Path = DYFF_VENV) -> Path:
    """The Python of a virtual environment holding :data:`DYFF_CLIENT`, made when missing.

    Concurrent test runs on this machine take turns (a lock file in the temporary
    directory), so two runs never build the same environment at once.
    """
    wanted = DYFF_CLIENT.split("==")[1]
    python = _venv_python(venv)
    lock_path = Path(tempfile.gettempdir()) / f"assay-dyff-client-{os.getuid()}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version(python) == wanted:
            return python
        if venv.exists() and not python.exists():
            shutil.rmtree(venv)  # a broken environment: start again
        if not venv.exists():
            _run([sys.executable, "-m", "venv", str(venv)], f"python -m venv {venv}")
        _run(
            [str(python), "-m", "pip", "install", "--quiet", DYFF_CLIENT],
            f"pip install {DYFF_CLIENT}",
        )
        if _installed_version(python) != wanted:
            raise RuntimeError(f"{venv} does not hold {DYFF_CLIENT} after installing it")
        return python


@pytest.fixture(scope="session")
def dyff_python() -> Path:
    """The Python of the reference client's environment (skips, or fails under CI, when it
    cannot be made)."""
    try:
        return ensure_dyff_client()
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        reason = f"cannot install the reference client {DYFF_CLIENT} into {DYFF_VENV}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A real ``assay serve`` on a free loopback port (``tests/server/loopback.py``)."""
    with serve(tmp_path) as server:
        yield server
