"""What every runner kind provides, and the registry of kinds.

A runner turns an InferenceService into replicas that answer requests: in-process objects
(``mock``), Assay's own replica processes (``python``, ``huggingface``, ``vllm``), or a service
that already runs somewhere (``http``, ``openai``). The session layer (``sessions.py``) starts
``replicas`` of them, watches them and stops them; the client (``client.py``) calls them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from assay import errors

if TYPE_CHECKING:
    from assay.inference.replicas import ProcessReplica
    from assay.schema.platform import InferenceService, InferenceSession

__all__ = [
    "ProcessRunner",
    "ReplicaHandle",
    "Runner",
    "RunnerEnv",
    "register_runner",
    "runner_for",
    "runner_kinds",
]


@dataclass
class ReplicaHandle:
    """One running replica, however it runs."""

    index: int
    style: Literal["inprocess", "replica", "plain"]
    """``inprocess``: call ``service`` directly; ``replica``: Assay's replica protocol at
    ``url`` (``/infer/{endpoint}``, ``/batch/{endpoint}``); ``plain``: POST ``url/endpoint``."""
    service: Any = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    """Headers every request carries (the replica secret or the service's credential)."""
    process: ProcessReplica | None = None
    batching: bool = False
    """True when the replica accepts several instances per request (Assay's replica
    processes: when the service has ``infer_batch``)."""
    capacity: int | None = None
    """How many calls the replica serves at once, where it declares it (Assay's replica
    processes: their ``threads``); None: unknown (a service that runs elsewhere)."""
    ready_path: str | None = None
    """A path that answers 2xx once the replica is ready (``plain`` replicas)."""
    health: Callable[[], str | None] | None = None
    """Why an in-process replica can no longer answer (None: it can), e.g. a pipeline whose
    step session ended; checked while its session is watched."""
    watched: bool = False
    """Watch the session like one with replica processes (claimed, checked for ``health``,
    restarted by ``resume()``) although no process of ours serves it."""

    def alive(self) -> bool:
        if self.process is not None and not self.process.alive():
            return False
        return self.health is None or self.health() is None

    def describe_exit(self) -> str:
        if self.process is None:
            problem = self.health() if self.health is not None else None
            return problem or "stopped"
        code = self.process.returncode
        tail = self.process.log_tail(20)
        return f"replica {self.index} exited with code {code}" + (
            f"; its last output:\n{tail}" if tail else ""
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        closer = getattr(self.service, "close", None)
        if callable(closer):
            closer()

    def shareable(self) -> dict[str, Any] | None:
        """How another process on this machine reaches this replica (None: it cannot)."""
        if self.style == "inprocess" or self.url is None:
            return None
        return {
            "index": self.index,
            "style": self.style,
            "url": self.url,
            "headers": self.headers,
            "batching": self.batching,
            "capacity": self.capacity,
            "ready_path": self.ready_path,
        }


@dataclass
class RunnerEnv:
    """What a runner needs from the platform to start a replica."""

    entity_dir: Callable[[str], Path]
    """The local directory of an entity's artifacts (a Module's or a Model's files)."""
    secret: Callable[[str, str], str]
    """``secret(account, name)``: the value of the secret ``name`` of ``account`` (raises
    NotFoundError; :meth:`assay.core.platform.PlatformCore.secret`)."""
    log_dir: Path | None = None
    platform: Any = None
    """The platform core, for runners that run other services (``pipeline``)."""


#: The most replicas of a service that runs elsewhere (lanes to its URL) or in-process.
MOST_REPLICAS = 64


class Runner(abc.ABC):
    """One runner kind."""

    kind: ClassVar[str]

    def most_replicas(self) -> tuple[int, str]:
        """How many replicas one session may have, and why no more."""
        return MOST_REPLICAS, "the most a session of this runner kind may have"

    def check(self, service: InferenceService, env: RunnerEnv | None = None) -> None:  # noqa: B027
        """Refuse a service whose runner configuration cannot work (at create time). With
        ``env``, files the service needs (a Module's code) are checked too where they exist."""

    def dependencies(self, service: InferenceService) -> list[str]:
        """Entities (beyond the Model) the service needs, e.g. a Module."""
        return []

    @abc.abstractmethod
    def start(self, session: InferenceSession, index: int, env: RunnerEnv) -> ReplicaHandle:
        """Start replica ``index`` of the session (do not wait for it to be ready)."""

    def wait_ready(self, handle: ReplicaHandle, timeout: float) -> None:  # noqa: B027
        """Return once the replica answers; raise an AssayError that says why not."""

    def attach(self, session: InferenceSession, env: RunnerEnv) -> list[ReplicaHandle] | None:
        """Handles for a session served by another process, where the kind allows it without
        shared state (in-process mocks are re-created); None: use the shared replica list."""
        return None


class ProcessRunner(Runner):
    """A runner whose replicas are Assay's replica processes (``replica_server.py``)."""

    def most_replicas(self) -> tuple[int, str]:
        import os

        cpus = os.cpu_count() or 1
        most = max(4, cpus)
        return most, (
            f"one process each, at most {most} on this machine ({cpus} CPUs); for more calls "
            "at once, give the service's configuration threads (calls served at once per "
            "replica)"
        )

    def spawn(
        self,
        session: InferenceSession,
        index: int,
        env: RunnerEnv,
        argv: list[str],
        environment: dict[str, str] | None = None,
        *,
        read_only: list[Path] | None = None,
    ) -> ReplicaHandle:
        """Start one replica process serving Assay's replica protocol. ``environment``: the
        variables it needs beside this process's (in the sandbox: instead of them);
        ``read_only``: the files it reads (its Modules, its Model), which are all a
        sandboxed replica sees of the platform's data."""
        import os

        from assay import sandbox
        from assay.inference import ray_replicas
        from assay.inference.replicas import ProcessReplica

        name = f"session {session.id} replica {index}"
        log_path = env.log_dir / f"replica-{index}.log" if env.log_dir else None
        policy = getattr(env.platform, "policy", None)
        job: sandbox.Job | None = None
        if policy is not None and policy.sandbox:
            sandbox.require(f"InferenceSession {session.id} (runner {self.kind})")
            root = getattr(getattr(env.platform, "storage", None), "root", None)
            job = sandbox.Job(
                read_only=list(read_only or []),
                env=dict(environment or {}),
                hide=[Path(root)] if root is not None else [],
                limits=policy.limits,
                env_allow=policy.env_allow,
            )
            full_env = None
        else:
            full_env = {**os.environ, **(environment or {})}
        replica: ProcessReplica
        if ray_replicas.on_cluster(env.platform):  # an actor placed by Ray: docs/design/ray.md
            replica = ray_replicas.RayReplica(
                argv,
                name=name,
                resources=ray_replicas.replica_resources(session),
                environment=environment,
                log_path=log_path,
                sandbox=job,
            )
        else:
            replica = ProcessReplica(argv, name=name, env=full_env, log_path=log_path, sandbox=job)
        replica.start()
        return ReplicaHandle(
            index=index,
            style="replica",
            process=replica,
            headers={"Authorization": f"Bearer {replica.secret}"},
            batching=True,
        )

    def wait_ready(self, handle: ReplicaHandle, timeout: float) -> None:
        if handle.process is None:
            return
        handle.process.wait_ready(timeout)
        handle.url = handle.process.url
        # What the replica says it can take (GET /ready): how many calls at once, and
        # whether it answers a batch in one call (older replicas say nothing: batches).
        declared = handle.process.declared
        threads = declared.get("threads")
        if isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1:
            handle.capacity = threads
        if isinstance(declared.get("batch"), bool):
            handle.batching = declared["batch"]


def configuration(service: InferenceService) -> dict[str, Any]:
    runner = service.runner
    return dict(runner.configuration or {}) if runner is not None else {}


def config_error(
    service: InferenceService,
    key: str,
    problem: str,
    cls: type[errors.ValidationError] = errors.ValidationError,
) -> errors.ValidationError:
    kind = str(service.runner.kind) if service.runner else "?"
    return cls(
        f"InferenceService {service.name!r}: runner.configuration.{key} {problem} (runner kind {kind!r})",
        field=f"runner.configuration.{key}",
    )


_RUNNERS: dict[str, Runner] = {}


def register_runner(runner: Runner) -> None:
    _RUNNERS[runner.kind] = runner


def runner_kinds() -> list[str]:
    _load_builtin()
    return sorted(_RUNNERS)


def runner_for(kind: str) -> Runner:
    """The runner of ``kind``; ValidationError listing the kinds for an unknown one."""
    _load_builtin()
    runner = _RUNNERS.get(str(kind))
    if runner is None:
        raise errors.ValidationError(
            f"runner kind {kind!r} cannot run on this platform; the runner kinds are "
            f"{', '.join(sorted(_RUNNERS))}",
            field="runner.kind",
            value=kind,
        )
    return runner


def _load_builtin() -> None:
    if _RUNNERS:
        return
    from assay.inference.runners import http, huggingface, mock, openai, python, vllm

    # the ``pipeline`` kind lives with the pipelines (which build on this package), loaded
    # here like a plugin so that every process knows every kind
    from assay.pipelines import runner as pipeline

    for module in (mock, python, http, openai, vllm, huggingface, pipeline):
        register_runner(module.RUNNER)
