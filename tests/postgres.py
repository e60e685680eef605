"""A PostgreSQL server for the tests: the session fixture ``postgres_url``.

``ASSAY_TEST_POSTGRES_URL`` (e.g. ``postgresql+psycopg://postgres@localhost/assay_test``)
names a server to use. Without it, the fixture starts a throwaway cluster from the installed
server binaries (``/usr/lib/postgresql/*/bin``, ``initdb`` on ``PATH``, or the directory in
``ASSAY_TEST_PG_BIN``) in a temporary directory, listening on a unix socket there and on
127.0.0.1, and removes it at the end of the session. ``make test`` installs the server where
it can (``scripts/ensure-postgres.sh``).

With no server, tests that need one are skipped, except under CI (``CI`` set), where that is
an error: CI must not quietly stop testing PostgreSQL.

Conftests bring the fixture into scope with ``from tests.postgres import postgres_url``;
``postgres_schema`` gives each test an empty schema of its own.
"""

from __future__ import annotations

import atexit
import glob
import importlib.util
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import NoReturn

import pytest
import sqlalchemy as sa

__all__ = ["postgres_schema", "postgres_url"]

URL_VARIABLE = "ASSAY_TEST_POSTGRES_URL"
BIN_VARIABLE = "ASSAY_TEST_PG_BIN"
DATABASE = "assay_test"
SUPERUSER = "postgres"
#: The system account that runs the server when the tests run as root (initdb refuses root).
SERVER_ACCOUNT = "postgres"
COMMAND_TIMEOUT_S = 120
HOW_TO_ENABLE = (
    "to run them, install a server (`bash scripts/ensure-postgres.sh` as root), set "
    f"{BIN_VARIABLE} to a directory holding initdb and pg_ctl, or {URL_VARIABLE} to a server's URL"
)


def in_ci() -> bool:
    """Whether the tests run under CI (``CI`` set to anything but a false value)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def find_server_bin() -> Path | None:
    """The directory with the server's ``initdb`` and ``pg_ctl`` (the newest version), if any."""

    def usable(directory: Path) -> bool:
        return all(os.access(directory / tool, os.X_OK) for tool in ("initdb", "pg_ctl"))

    explicit = os.environ.get(BIN_VARIABLE)
    if explicit is not None:
        return Path(explicit) if usable(Path(explicit)) else None

    def version(directory: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in directory.parent.name.split(".") if part.isdigit())

    candidates = sorted(
        (Path(path) for path in glob.glob("/usr/lib/postgresql/*/bin")), key=version, reverse=True
    )
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(Path(on_path).parent)
    return next((directory for directory in candidates if usable(directory)), None)


class ServerError(RuntimeError):
    """The server was found but could not be set up: a real failure, never a skip."""


class Cluster:
    """A throwaway cluster in a temporary directory, run by ``bin_dir``'s binaries."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.account: str | None = None
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            import pwd

            try:
                pwd.getpwnam(SERVER_ACCOUNT)
            except KeyError:
                raise LookupError(
                    f"running as root, and there is no {SERVER_ACCOUNT!r} system user to run the "
                    "server as (initdb refuses to run as root)"
                ) from None
            self.account = SERVER_ACCOUNT
        self.root = Path(tempfile.mkdtemp(prefix="assay-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.running = False
        self.url = ""

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self.account is not None:
            runuser = shutil.which("runuser")
            if runuser is not None:
                command = [runuser, "-u", self.account, "--", *command]
            else:
                command = ["su", self.account, "-s", "/bin/sh", "-c", shlex.join(command)]
        return subprocess.run(
            command,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )

    def _check(self, what: str, result: subprocess.CompletedProcess[str]) -> None:
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise ServerError(
                f"PostgreSQL {what} failed (exit {result.returncode}) in {self.root}:\n"
                f"{result.stdout}{result.stderr}{log}"
            )

    def start(self) -> str:
        """Create the cluster and a database, start the server; returns the database's URL."""
        if self.account is not None:
            import pwd

            user = pwd.getpwnam(self.account)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        initdb = self._run(
            str(self.bin_dir / "initdb"),
            *("-D", str(self.data), "-U", SUPERUSER, "-A", "trust"),
            *("-E", "UTF8", "--locale=C", "--no-sync"),
        )
        self._check("initdb", initdb)
        self.running = True  # from here on, stop() must try to stop a server
        base = (self.data / "postgresql.conf").read_text()
        for attempt in range(3):  # another process may take the free port before the server
            self.port = _free_port()
            settings = {
                "listen_addresses": "'127.0.0.1'",
                "port": str(self.port),
                "unix_socket_directories": f"'{self.root}'",
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
            }
            extra = "".join(f"{key} = {value}\n" for key, value in settings.items())
            (self.data / "postgresql.conf").write_text(f"{base}\n# assay tests\n{extra}")
            started = self._run(
                str(self.bin_dir / "pg_ctl"),
                *("-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start"),
            )
            if started.returncode == 0:
                break
            if attempt == 2 or "already in use" not in self.log.read_text(errors="replace"):
                self._check("start", started)
        server = sa.URL.create(
            "postgresql+psycopg", username=SUPERUSER, host="127.0.0.1", port=self.port
        )
        admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {DATABASE}")
        finally:
            admin.dispose()
        self.url = server.set(database=DATABASE).render_as_string(hide_password=False)
        return self.url

    def stop(self) -> None:
        """Stop the server (no checkpoint: the data is thrown away) and delete the cluster."""
        if self.running:
            self.running = False
            stopped = self._run(
                str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
            )
            if stopped.returncode != 0:
                with suppress(OSError, ValueError, IndexError):
                    pid = int((self.data / "postmaster.pid").read_text().split()[0])
                    os.kill(pid, signal.SIGQUIT)
        shutil.rmtree(self.root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _Shared:
    """One cluster per session, however many conftests bring the fixture in."""

    cluster: Cluster | None = None
    users = 0
    unavailable: str | None = None


def _unavailable(reason: str) -> NoReturn:
    _Shared.unavailable = reason
    if in_ci():
        pytest.fail(
            f"PostgreSQL tests cannot run under CI: {reason} ({HOW_TO_ENABLE})", pytrace=False
        )
    pytest.skip(f"PostgreSQL tests skipped: {reason}; {HOW_TO_ENABLE}")


def _start_cluster() -> Cluster:
    if _Shared.unavailable is not None:
        _unavailable(_Shared.unavailable)
    bin_dir = find_server_bin()
    if bin_dir is None:
        where = os.environ.get(BIN_VARIABLE) or "/usr/lib/postgresql/*/bin or on PATH"
        _unavailable(f"no PostgreSQL server (initdb and pg_ctl) in {where}")
    if importlib.util.find_spec("psycopg") is None:
        _unavailable("the psycopg driver is not installed")
    try:
        cluster = Cluster(bin_dir)
    except LookupError as error:
        _unavailable(str(error))
    atexit.register(cluster.stop)  # should the session end without its teardown
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextmanager
def _shared_cluster() -> Iterator[str]:
    cluster = _Shared.cluster = _Shared.cluster or _start_cluster()
    _Shared.users += 1
    try:
        yield cluster.url
    finally:
        _Shared.users -= 1
        if _Shared.users == 0:
            _Shared.cluster = None
            cluster.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The SQLAlchemy URL of a PostgreSQL database the tests may use (create schemas in it)."""
    given = os.environ.get(URL_VARIABLE)
    if given:
        yield given
        return
    with _shared_cluster() as url:
        yield url


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """The URL of a new, empty schema in ``base_url``'s database (dropped afterwards)."""
    schema = f"assay_test_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(base_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        url = sa.make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
