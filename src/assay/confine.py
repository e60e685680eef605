"""Entering the sandbox from inside a forked process (Linux): the view bubblewrap builds
(:mod:`assay.sandbox`), made with the system calls themselves.

The analysis fork server (``assay.analysis.forkserver``) has pyarrow and the analysis runtime
imported once; a fresh ``bwrap`` + interpreter per analysis would import them again (most of an
analysis's fixed cost). So a sandboxed analysis is a fork of that server that confines itself,
before any user code runs, with :func:`enter` — the same namespaces, mounts and limits as
:func:`assay.sandbox.command`, from the same plan (:func:`assay.sandbox.plan`):

1. the server's child (the *relay*, :func:`start`) enters new user and PID namespaces, maps its
   user to the sandbox's (65534), forks the job and ends: the job is PID 1 of the new PID
   namespace, alone in it (it cannot see or signal its siblings or the server), and whatever
   it starts dies with it. The server (a subreaper) adopts it and reaps it. The job enters new
   mount, network, IPC, UTS and cgroup namespaces of its own;
2. the job (:func:`enter`) builds a new root (a tmpfs) holding only what the plan binds — the
   system's programs, this Python (read-only), its Modules and inputs (read-only) and its
   writable folder — plus a new ``/proc`` (its own processes only), a minimal ``/dev`` and a
   private ``/tmp``; pivots into it and detaches the old root; brings up the loopback
   interface of its empty network; forbids further user namespaces; starts a new session;
   replaces its environment (and zeroes the one the server started with, which
   ``/proc/self/environ`` would show);
   sets the resource limits and ``no_new_privs``; drops every capability (bounding, ambient,
   effective, permitted, inheritable); and returns to run user code.

(A single ``clone(2)`` with the namespace flags would save the relay's fork, but a raw clone
leaves the C library believing the server's other threads — jemalloc's, Arrow's — still exist,
and the job deadlocks on them.) Any failure while confining exits with :data:`FAILED` before user code could run. Siblings
share no network, IPC, mount or PID namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import resource
import signal
import socket
import struct
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from assay.sandbox import JOB_UID

__all__ = ["FAILED", "become_subreaper", "enter", "exit_code", "fail", "start"]

#: The exit status of a job whose confinement failed (nothing of the job ran).
FAILED = 71

_CLONE_NEWNS = 0x00020000
_CLONE_NEWCGROUP = 0x02000000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_NOATIME = 1024
_MS_NODIRATIME = 2048
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MS_RELATIME = 1 << 21
_MNT_DETACH = 2
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_SYS_MOUNT_SETATTR = 442  # the same number on every architecture
_MOUNT_ATTR_RDONLY = 0x1
_AT_RECURSIVE = 0x8000
#: Where the old root is while the new one is built (inside the first tmpfs).
_OLD = "/oldroot"
_NEW = "/newroot"
#: The devices of the job's /dev.
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    result = _libc.mount(
        source.encode() if source is not None else None,
        target.encode(),
        fstype.encode() if fstype is not None else None,
        ctypes.c_ulong(flags),
        data.encode() if data is not None else None,
    )
    _check(result, f"mount {source or fstype} on {target}")


def become_subreaper() -> None:
    """Make this process (the fork server) the parent of its orphaned descendants: a job is
    handed to it when its relay ends (:func:`start`)."""
    _check(_libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "child subreaper")


def start(report: int) -> None:
    """In a forked, single-threaded child of a server that is a subreaper
    (:func:`become_subreaper`): enter new user and PID namespaces and fork the job into them.
    This process (the *relay*) writes the job's pid to ``report`` and ends at once, never
    returning: the job, orphaned, becomes the server's own child (the server reaps it and
    sees how it ended, and the relay's end is not on the job's path). In the job, which is
    PID 1 of its namespace and must go on with :func:`enter`, returns once the server is its
    parent. OSError where this cannot work (user namespaces not allowed)."""
    server = os.getppid()
    outer = (os.getuid(), os.getgid())
    _check(_libc.unshare(_CLONE_NEWUSER | _CLONE_NEWPID), "unshare")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{JOB_UID} {outer[0]} 1")
    Path("/proc/self/gid_map").write_text(f"{JOB_UID} {outer[1]} 1")
    job = os.fork()
    if job:
        os.write(report, f"{job}\n".encode())
        os._exit(0)
    os.close(report)
    # the other namespaces only in the job (the relay then has none of it to tear down)
    _check(
        _libc.unshare(
            _CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS | _CLONE_NEWCGROUP
        ),
        "unshare",
    )
    # the job dies with the server (and so with the platform): once adopted by it, since the
    # signal would come at the relay's end otherwise
    deadline = time.monotonic() + 30
    while _parent() != server:
        if time.monotonic() > deadline:
            raise OSError(errno.ETIMEDOUT, "the server did not adopt the job")
        time.sleep(0.0002)
    _check(_libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0), "pdeathsig")
    if _parent() != server:
        os._exit(FAILED)  # the server died before the line above took effect


def _parent() -> int:
    # the host's /proc, still mounted here: it counts in the server's PID namespace (getppid
    # says 0 to a namespace's PID 1)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise OSError(errno.ENOENT, "no PPid in /proc/self/status")


def enter(
    plan: Sequence[Sequence[str]],
    *,
    cwd: str,
    limits: Mapping[str, int],
    env: Mapping[str, str],
    hostname: str = "sandbox",
) -> None:
    """Confine the job forked by :func:`start` (see the module docstring); returns ready to
    run its code, or exits with :data:`FAILED`. ``plan``: ``(operation, source, destination)``
    triples (:func:`assay.sandbox.plan`); ``limits``: :class:`assay.policy.SandboxLimits` as a
    mapping."""
    try:
        _build_root(plan)
        _check(_libc.sethostname(hostname.encode(), len(hostname)), "sethostname")
        _loopback_up()
        # no further user namespaces below this one (nor their capabilities over mounts)
        Path("/proc/sys/user/max_user_namespaces").write_text("0")
        os.setsid()
        _set_limits(limits)
        _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _drop_capabilities()
        os.chdir(cwd)
        os.environ.clear()
        _wipe_initial_environment()
        os.environ.update(env)
    except BaseException as exc:
        fail(exc)


def fail(exc: BaseException) -> NoReturn:
    """End a job that could not be confined, saying why on its standard error."""
    with contextlib.suppress(BaseException):
        print(f"sandbox: could not confine the job ({exc})", file=sys.stderr, flush=True)
    os._exit(FAILED)


def exit_code(status: int, cpu_seconds: float, limits: Mapping[str, int]) -> int:
    """The exit code of a confined job from its wait status (negative: the signal that
    killed it) and the CPU time it used. The job is PID 1 of its namespace, to which
    the kernel's SIGXCPU at the soft CPU limit is not delivered; killed at the hard limit, it
    reads as killed by SIGXCPU, as any other process would be."""
    code = os.waitstatus_to_exitcode(status)
    if code == -signal.SIGKILL and cpu_seconds >= int(limits["cpu_seconds"]):
        return -int(signal.SIGXCPU)
    return code


def _build_root(plan: Sequence[Sequence[str]]) -> None:
    # nothing mounted here propagates back to the host
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    # a scratch tmpfs as the root for a moment: the old root under it at /oldroot, the new
    # root built at /newroot (the way bubblewrap does it)
    scratch = "/tmp" if os.path.isdir("/tmp") else "/"
    _mount("tmpfs", scratch, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755")
    os.mkdir(f"{scratch}{_NEW}", 0o755)
    os.mkdir(f"{scratch}{_OLD}", 0o755)
    _check(_libc.pivot_root(scratch.encode(), f"{scratch}{_OLD}".encode()), "pivot_root")
    os.chdir("/")
    _mount("tmpfs", _NEW, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755")
    for operation, source, destination in plan:
        _apply(operation, source, _NEW + destination)
    os.chdir(_NEW)
    _check(_libc.pivot_root(b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", _MNT_DETACH), "detaching the old root")
    os.chdir("/")


def _apply(operation: str, source: str, target: str) -> None:
    if operation == "symlink":
        _parents(target)
        os.symlink(source, target)
    elif operation == "dir":
        os.makedirs(target, 0o755, exist_ok=True)
    elif operation == "tmpfs":
        os.makedirs(target, 0o755, exist_ok=True)
        _mount("tmpfs", target, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755")
    elif operation == "proc":
        os.makedirs(target, 0o755, exist_ok=True)
        _mount("proc", target, "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    elif operation == "dev":
        os.makedirs(target, 0o755, exist_ok=True)
        _mount("tmpfs", target, "tmpfs", _MS_NOSUID | _MS_NOEXEC, "mode=0755")
        for name in _DEVICES:
            if os.path.exists(f"{_OLD}/dev/{name}"):
                _bind(f"{_OLD}/dev/{name}", f"{target}/{name}", read_only=False)
        os.mkdir(f"{target}/shm", 0o1777)
        os.mkdir(f"{target}/pts", 0o755)
        os.symlink("/proc/self/fd", f"{target}/fd")
        for number, name in enumerate(("stdin", "stdout", "stderr")):
            os.symlink(f"/proc/self/fd/{number}", f"{target}/{name}")
    elif operation in ("ro", "rw"):
        _bind(_OLD + source, target, read_only=operation == "ro")
    else:
        raise ValueError(f"unknown sandbox operation {operation!r}")


def _parents(target: str) -> None:
    os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)


def _bind(source: str, target: str, *, read_only: bool) -> None:
    if os.path.isdir(source):
        os.makedirs(target, 0o755, exist_ok=True)
    elif not os.path.lexists(target):
        _parents(target)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644))
    _mount(source, target, None, _MS_BIND | _MS_REC)
    if read_only:
        _read_only(target)


def _read_only(target: str) -> None:
    """Make the mount at ``target`` and every mount below it read-only."""
    attr = _MountAttr(attr_set=_MOUNT_ATTR_RDONLY)
    result = _libc.syscall(
        _SYS_MOUNT_SETATTR,
        -100,  # AT_FDCWD
        target.encode(),
        _AT_RECURSIVE,
        ctypes.byref(attr),
        ctypes.sizeof(attr),
    )
    if result == 0:
        return
    # kernels before 5.12: remount the top, keeping the flags it has (a user namespace may
    # not clear them)
    kept = os.statvfs(target).f_flag & (
        _MS_NOSUID | _MS_NODEV | _MS_NOEXEC | _MS_NOATIME | _MS_NODIRATIME | _MS_RELATIME
    )
    _mount(None, target, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | kept)


def _wipe_initial_environment() -> None:
    """Zero the environment the server started with, which a forked process keeps in its
    memory and shows at ``/proc/self/environ`` whatever it sets later (once the C library's
    own copy is cleared: the job's is set anew after)."""
    fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
    # proc(5): env_start and env_end are fields 50 and 51; ``fields`` starts at field 3
    start, end = int(fields[47]), int(fields[48])
    if 0 < start < end:
        ctypes.memset(start, 0, end - start)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def _set_limits(limits: Mapping[str, Any]) -> None:
    mib = 1024 * 1024
    cpu = int(limits["cpu_seconds"])
    for which, soft, hard in (
        (resource.RLIMIT_AS, int(limits["memory_mb"]) * mib, None),
        # SIGXCPU at the limit, SIGKILL a second later if that is ignored
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_FSIZE, int(limits["file_mb"]) * mib, None),
        (resource.RLIMIT_NOFILE, int(limits["open_files"]), None),
        (resource.RLIMIT_NPROC, int(limits["processes"]), None),
        (resource.RLIMIT_CORE, 0, None),
    ):
        hard = soft if hard is None else hard
        _, ceiling = resource.getrlimit(which)
        if ceiling != resource.RLIM_INFINITY:  # only lowered: raising needs a privilege
            soft, hard = min(soft, ceiling), min(hard, ceiling)
        resource.setrlimit(which, (soft, hard))


def _drop_capabilities() -> None:
    number = 0
    while _libc.prctl(_PR_CAPBSET_DROP, number, 0, 0, 0) == 0:
        number += 1
    _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")
