"""``Policy``: what a platform allows the code and the services of its accounts to do.

The embedded ``LocalPlatform`` runs one user's own code: by default nothing is confined
(``Policy()``). A multi-user server (``assay serve`` without ``--single-user``) builds a strict
policy from its settings (``ServerSettings.policy()``): user code in the sandbox
(:mod:`assay.sandbox`), runner credentials only from the account's own secrets or from the
server variables the operator names, ``http``/``openai`` services only on hosts the policy
allows. The policy travels with :class:`assay.core.platform.CoreConfig`, so the worker
processes of the ``processes`` executor apply the same rules. See ``docs/design/security.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Policy", "SandboxLimits"]

MiB = 1 << 20


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of each sandboxed job (an analysis, a replica, a registration check)."""

    memory_mb: int = 8192
    """The most address space of each process, in MiB (``RLIMIT_AS``)."""
    cpu_seconds: int = 24 * 3600
    """The most CPU time of each process, in seconds (``RLIMIT_CPU``)."""
    processes: int = 512
    """The most processes and threads of the job at once (``RLIMIT_NPROC``, counted in the
    job's own user namespace)."""
    file_mb: int = 65536
    """The largest file the job may write, in MiB (``RLIMIT_FSIZE``)."""
    open_files: int = 4096
    """The most open files of each process (``RLIMIT_NOFILE``)."""


@dataclass(frozen=True)
class Policy:
    """What the accounts of a platform may do (see the module docstring)."""

    multi_user: bool = False
    """Several accounts share the platform and do not trust each other."""
    sandbox: bool = False
    """Run user code (analyses, ``python``/``huggingface`` replicas, registration checks) in
    the sandbox (:mod:`assay.sandbox`, bubblewrap)."""
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    """The sandbox's resource limits."""
    env_allow: tuple[str, ...] = ()
    """Names of this process's environment variables passed into sandboxed jobs, beside the
    sandbox's own short list (``PATH``, ``LANG``, ``TZ``...)."""
    credential_env_allow: tuple[str, ...] | None = None
    """Environment variables that a runner credential may name (``{"env": NAME}``); None: any
    (the embedded platform, whose user owns the environment)."""
    allowed_hosts: tuple[str, ...] | None = None
    """Where ``http``/``openai`` services may be reached. None: anywhere. Otherwise public
    addresses, plus these hosts, addresses or networks (``10.0.0.0/8``, ``models.internal``,
    ``127.0.0.1``); loopback, link-local and private addresses are refused unless listed."""
    inference_per_account: int | None = None
    """The most inference calls (session ``infer`` requests) one account may have running at
    once on the server; None: no limit."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Policy:
        if not data:
            return cls()
        values = dict(data)
        values["limits"] = SandboxLimits(**(values.get("limits") or {}))
        for name in ("env_allow", "credential_env_allow", "allowed_hosts"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        return cls(**values)
