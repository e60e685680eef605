"""The sandbox of user code: bubblewrap (``bwrap``, the Debian package ``bubblewrap``).

A multi-user server runs every account's code — analysis methods (Python functions and
notebooks, their Jupyter kernels included), ``python`` and ``huggingface`` replicas — through
:func:`command`, which wraps the job's command line in ``bwrap``:

- a new, empty root (a tmpfs) holding only the system's programs and libraries (``/usr`` and
  its links, a short list of ``/etc`` files), this Python installation (read-only), the job's
  own Modules and inputs (read-only) and its private writable folders; the platform's data
  directory (database, key, other entities) is not there, and is hidden under an empty tmpfs
  should an interpreter path contain it;
- new user, PID, IPC, UTS, cgroup and network namespaces: a method reaches no network at all;
  a replica gets no network either but is handed its listening socket, already bound on the
  host's loopback (:func:`listening_socket`), so it can answer the platform and reach nothing;
- all capabilities dropped, no further user namespaces, a new session (no terminal
  injection), the job killed with its parent;
- a scrubbed environment: :data:`BASE_ENV` names what is passed on, plus what the operator
  allows (``Policy.env_allow``) and what the job itself needs;
- resource limits (``prlimit`` inside the sandbox): address space, CPU time, file size, open
  files and processes. The kernel does not apply a process limit to root, so when the
  platform runs as root the process count is enforced by a watchdog (:class:`Watchdog`) that
  kills a job with too many; run the server as a dedicated user (docs/design/security.md).

Outputs come back through the writable folders only, and the platform copies back only regular
files found there without following links (:func:`regular_files`, :func:`read_regular`).
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from assay import errors
from assay.policy import MiB, SandboxLimits

__all__ = [
    "BASE_ENV",
    "Job",
    "Mount",
    "SandboxUnavailableError",
    "Watchdog",
    "available",
    "command",
    "environment",
    "exit_signal",
    "listening_socket",
    "plan",
    "read_regular",
    "regular_files",
    "require",
]

#: Environment variables passed into every job when set (beside ``Policy.env_allow`` and the
#: job's own).
BASE_ENV = ("LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "PYTHONUNBUFFERED")
#: The files of ``/etc`` a job may read (name lookups, locales, certificates, time zone).
ETC_FILES = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "passwd",
    "ssl",
)
#: Where the job's home and temporary files are (a tmpfs inside the sandbox).
JOB_HOME = "/tmp/home"
#: The job's user and group inside the sandbox.
JOB_UID = 65534
_INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
    "bubblewrap) and make sure unprivileged user namespaces are enabled "
    "(sysctl kernel.unprivileged_userns_clone=1)"
)


class SandboxUnavailableError(errors.PlatformError):
    """The sandbox cannot run on this machine; the message says why and how to fix it."""


#: One step of building a job's root (:func:`plan`).
Mount = tuple[str, str, str]


@dataclass(frozen=True)
class Job:
    """What one sandboxed job may see and do."""

    read_only: Sequence[Path] = ()
    """Files and directories visible read-only at their own paths (Modules, inputs)."""
    writable: Sequence[Path] = ()
    """Directories visible read-write at their own paths (the job's output)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Variables the job needs (its configuration file, a replica's secret)."""
    cwd: Path | None = None
    """The working directory (default: the job's home, a private tmpfs)."""
    hide: Sequence[Path] = ()
    """Directories that must look empty even where a path above them is visible (the
    platform's data directory)."""
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    env_allow: Sequence[str] = ()
    """More variable names of this process's environment to pass on (``Policy.env_allow``)."""
    share_fds: Sequence[int] = ()
    """File descriptors the job inherits (a replica's listening socket)."""


@functools.cache
def _bwrap() -> str | None:
    return shutil.which("bwrap")


@functools.cache
def available() -> str | None:
    """None when the sandbox works here; otherwise why not, and the fix."""
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux (this is {sys.platform})"
    bwrap = _bwrap()
    if bwrap is None:
        return f"bubblewrap (bwrap) is not installed: {_INSTALL_HINT}"
    try:
        argv, env = command([sys.executable, "-c", "pass"], Job())
        done = subprocess.run(argv, env=env, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not run ({exc}): {_INSTALL_HINT}"
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip()[-500:]
        return f"bubblewrap could not start a sandbox ({said or done.returncode}): {_INSTALL_HINT}"
    return None


def require(what: str) -> None:
    """Raise :class:`SandboxUnavailableError` naming ``what`` needed it, unless it works."""
    why = available()
    if why is not None:
        raise SandboxUnavailableError(f"{what} must run in the sandbox, but {why}")


@functools.cache
def _python_roots() -> tuple[Path, ...]:
    """The directories this interpreter and its packages live in (read-only in jobs)."""
    roots: list[Path] = []
    entries = list(sys.path)
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    if entries and main and Path(entries[0]) == Path(main).parent:
        entries = entries[1:]  # the platform's own script's folder is not the job's
    for entry in (sys.prefix, sys.base_prefix, sys.exec_prefix, *entries):
        if not entry:
            continue
        path = Path(entry)
        if any(_under(Path(top), [path]) for top in ("/tmp", "/dev", "/proc")):
            continue  # the job has its own
        try:
            real = path.resolve()
        except OSError:
            continue
        if not real.is_dir():
            continue
        for candidate in {path.absolute(), real}:
            if candidate in (Path("/"), Path("/usr")) or _under(candidate, [Path("/usr")]):
                continue
            roots.append(candidate)
    # the interpreter itself may be a link into another prefix (a venv's bin/python)
    exe = Path(sys.executable)
    roots.append(exe.resolve().parent.parent)
    ordered: list[Path] = []
    for root in sorted(set(roots), key=lambda p: len(p.parts)):
        if not any(_under(root, [kept]) for kept in ordered):
            ordered.append(root)
    return tuple(ordered)


def _under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


@functools.cache
def _system_mounts() -> tuple[Mount, ...]:
    mounts: list[Mount] = [("ro", "/usr", "/usr")]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        top = Path("/") / name
        if top.is_symlink():
            mounts.append(("symlink", os.readlink(top), str(top)))
        elif top.is_dir():
            mounts.append(("ro", str(top), str(top)))
    for name in ETC_FILES:
        path = Path("/etc") / name
        if path.exists():
            mounts.append(("ro", str(path), str(path)))
    return tuple(mounts)


def plan(job: Job) -> list[Mount]:
    """What the job's root holds, in order: ``(operation, source, destination)`` with the
    operations ``ro``/``rw`` (a bind mount of ``source``), ``symlink`` (to ``source``),
    ``tmpfs``, ``dir``, ``proc`` and ``dev``. :func:`command` hands it to bubblewrap;
    :func:`assay.confine.enter` builds the same root in a forked process."""
    mounts: list[Mount] = [
        *_system_mounts(),
        ("proc", "", "/proc"),
        ("dev", "", "/dev"),
        ("tmpfs", "", "/tmp"),
        ("dir", "", JOB_HOME),
    ]
    mounts += [("ro", str(root), str(root)) for root in _python_roots()]
    mounts += [("tmpfs", "", str(hidden)) for hidden in job.hide]
    mounts += [("ro", str(path), str(path)) for path in job.read_only]
    mounts += [("rw", str(path), str(path)) for path in job.writable]
    # a bind's source as this machine resolves it (``/etc/localtime`` is a link, for one):
    # a forked job resolves its sources under the old root, where an absolute link would
    # lead elsewhere
    return [
        (op, os.path.realpath(source) if op in ("ro", "rw") else source, destination)
        for op, source, destination in mounts
    ]


_BWRAP_OPERATIONS = {
    "ro": "--ro-bind",
    "rw": "--bind",
    "symlink": "--symlink",
    "tmpfs": "--tmpfs",
    "dir": "--dir",
    "proc": "--proc",
    "dev": "--dev",
}


def environment(job: Job) -> dict[str, str]:
    """The job's whole environment (see the module docstring)."""
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": JOB_HOME,
        "TMPDIR": "/tmp",
    }
    for name in (*BASE_ENV, *job.env_allow):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(job.env)
    return env


def command(argv: Sequence[str], job: Job) -> tuple[list[str], dict[str, str]]:
    """The command line that runs ``argv`` in the sandbox, and its environment."""
    bwrap = _bwrap()
    if bwrap is None:
        raise SandboxUnavailableError(f"bubblewrap (bwrap) is not installed: {_INSTALL_HINT}")
    args = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        str(JOB_UID),
        "--gid",
        str(JOB_UID),
        "--hostname",
        "sandbox",
    ]
    for operation, source, destination in plan(job):
        args.append(_BWRAP_OPERATIONS[operation])
        if operation in ("ro", "rw", "symlink"):
            args.append(source)
        args.append(destination)
    args += ["--chdir", str(job.cwd or JOB_HOME)]
    limits = job.limits
    args += [
        "/usr/bin/prlimit",
        f"--as={limits.memory_mb * MiB}",
        # SIGXCPU at the limit, SIGKILL a second later if that is ignored
        f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 1}",
        f"--fsize={limits.file_mb * MiB}",
        f"--nofile={limits.open_files}",
        f"--nproc={limits.processes}",
        "--core=0",
        "--",
        *argv,
    ]
    return args, environment(job)


def exit_signal(code: int) -> int | None:
    """The signal that ended a sandboxed job (bwrap reports a job killed by signal N as exit
    status 128 + N; a negative status is bwrap's own death), or None."""
    if code < 0:
        return -code
    if 128 < code < 128 + 65:
        return code - 128
    return None


def listening_socket(host: str = "127.0.0.1") -> socket.socket:
    """A TCP socket listening on a free port of ``host``, to hand to a sandboxed replica: it
    accepts the platform's connections on the host's network while having none of its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sock.listen(2048)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


# -- what comes back ---------------------------------------------------------------------------


def regular_files(directory: Path) -> Iterator[tuple[str, Path]]:
    """``(relative posix path, path)`` of each regular file under ``directory``, never
    following a link (links, devices, fifos and sockets are skipped)."""
    try:
        top = os.lstat(directory)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(top.st_mode):
        return
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=False):
        base = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if stat.S_ISDIR(os.lstat(base / d).st_mode))
        for name in sorted(filenames):
            path = base / name
            if stat.S_ISREG(os.lstat(path).st_mode):
                yield path.relative_to(directory).as_posix(), path


def read_regular(path: Path, *, limit: int = 16 * MiB) -> bytes | None:
    """The bytes of ``path`` if it is a regular file (not a link) of at most ``limit`` bytes;
    None if it is missing; raises ValueError if it is something else or too large."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"{path.name} is not a regular file ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path.name} is not a regular file")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path.name} is larger than {limit:,} bytes")
    return data


# -- the process watchdog ----------------------------------------------------------------------


class Watchdog:
    """Counts the processes and threads of a sandboxed job (all tasks in its PID namespace)
    every ``interval`` seconds and kills the job when it has more than ``limit``: the process
    limit where the kernel applies none (the platform runs as root). ``pid``: the job's
    outermost process: PID 1 of the job's namespace (``own_namespace``, :mod:`assay.confine`)
    or, for ``bwrap``, the process whose first child is; ``running`` and ``kill`` look after
    it."""

    def __init__(
        self,
        pid: int,
        limit: int,
        *,
        running: Callable[[], bool],
        kill: Callable[[], None],
        own_namespace: bool = False,
        interval: float = 0.2,
    ):
        self.exceeded = False
        self._own_namespace = own_namespace
        self._pid = pid
        self._running = running
        self._kill = kill
        self._limit = limit
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="assay-sandbox-watch", daemon=True)
        if os.geteuid() == 0 and sys.platform.startswith("linux"):
            self._thread.start()

    @classmethod
    def of(cls, process: subprocess.Popen[bytes], limit: int) -> Watchdog:
        """The watchdog of a ``bwrap`` process."""
        return cls(process.pid, limit, running=lambda: process.poll() is None, kill=process.kill)

    def _namespace(self) -> str | None:
        try:
            if self._own_namespace:
                return os.readlink(f"/proc/{self._pid}/ns/pid")
            # bwrap's child (the sandbox's PID 1) holds the job's PID namespace
            children = Path(f"/proc/{self._pid}/task/{self._pid}/children")
            for child in children.read_text().split():
                return os.readlink(f"/proc/{child}/ns/pid")
        except OSError:
            return None
        return None

    def _count(self, namespace: str) -> int:
        tasks = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry.name}/ns/pid") != namespace:
                    continue
                tasks += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue
        return tasks

    def _run(self) -> None:
        namespace = None
        while not self._stop.wait(self._interval):
            if not self._running():
                return
            namespace = namespace or self._namespace()
            if namespace is None or namespace == os.readlink("/proc/self/ns/pid"):
                namespace = None
                continue
            if self._count(namespace) > self._limit:
                self.exceeded = True
                self._kill()
                return

    def stop(self) -> None:
        self._stop.set()
