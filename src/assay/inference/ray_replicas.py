"""Replicas as Ray actors: on a platform whose workflows run on a Ray cluster (the ``ray``
executor), each replica process of the ``python``, ``huggingface`` and ``vllm`` runners is
started inside a Ray actor that Ray places on a node with the resources the service asks
for (``runner.resources.cpu`` and ``memory``, GPUs from the session's or the runner's
``accelerator``), instead of in the process that starts the session.

Inside the actor the replica is the same :class:`~assay.inference.replicas.ProcessReplica`
(the same command, the same sandbox, the same death with its parent: the actor), listening
on the node's address rather than loopback, so that every node reaches it; the bearer secret
made for each replica guards it as it guards a replica on loopback. :class:`RayReplica` is the
supervisor's view of it: ``alive()``, ``returncode``, ``log_tail()`` and ``stop()`` ask the
actor, and an actor lost with its node reads as a replica that died. The actor belongs to the
process that started the session (Ray ends it with that process). See ``docs/design/ray.md``.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay import errors
from assay.inference.replicas import ProcessReplica, ReplicaStartError

if TYPE_CHECKING:
    from assay.sandbox import Job
    from assay.schema.platform import InferenceSession

__all__ = ["PLACE_TIMEOUT", "RayReplica", "ReplicaActor", "on_cluster", "replica_resources"]

#: Seconds a replica's actor may wait for a node with the resources it asks for.
PLACE_TIMEOUT = 120.0
#: Seconds an actor has to answer a look (alive, return code, output).
LOOK_TIMEOUT = 10.0

_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "m": 1e-3,
}


def on_cluster(platform: Any) -> bool:
    """Whether replicas started by ``platform`` (in this process) go to the Ray cluster: its
    workflows run there (the head's executor, or a Ray worker's) and Ray is connected."""
    import sys

    engine = getattr(platform, "engine", None)
    name = getattr(getattr(engine, "executor", None), "name", None)
    if name not in ("ray", "ray-worker") or "ray" not in sys.modules:
        return False
    import ray

    return bool(ray.is_initialized())


def _quantity(text: str, what: str) -> float:
    """A Kubernetes quantity (``2``, ``500m``, ``8Gi``) as a number."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if match is None or match.group(2) not in _UNITS:
        raise errors.ValidationError(
            f"{what} {text!r} is not a quantity (e.g. 2, 500m, 8Gi)", field=what, value=text
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def replica_resources(session: InferenceSession) -> dict[str, float]:
    """What one replica of ``session`` asks of a node, as Ray options: ``num_cpus`` from the
    runner's ``resources.cpu`` (0 where it says none: a replica then takes no CPU slot from
    the workflows), ``memory`` (bytes) from ``resources.memory``, ``num_gpus`` from the
    session's ``accelerator`` (else the runner's)."""
    service = session.inferenceService
    runner = service.runner
    resources = runner.resources if runner is not None else None
    wanted: dict[str, float] = {"num_cpus": 0.0}
    if resources is not None and resources.cpu is not None:
        wanted["num_cpus"] = _quantity(resources.cpu, "runner.resources.cpu")
    if resources is not None and resources.memory is not None:
        wanted["memory"] = _quantity(resources.memory, "runner.resources.memory")
    accelerator = session.accelerator or (runner.accelerator if runner is not None else None)
    if accelerator is not None and accelerator.gpu is not None:
        wanted["num_gpus"] = float(accelerator.gpu.count)
    return wanted


def _check_feasible(wanted: dict[str, float], name: str) -> None:
    """Refuse at once what no node of the cluster has (Ray would wait for it forever)."""
    import ray

    keys = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}
    found: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    nodes = [n.get("Resources", {}) for n in found if n.get("Alive")]
    if any(all(node.get(keys[k], 0.0) >= v for k, v in wanted.items()) for node in nodes):
        return
    largest = {
        keys[k]: max((node.get(keys[k], 0.0) for node in nodes), default=0.0) for k in wanted
    }
    asked = ", ".join(f"{keys[k]} {v:g}" for k, v in wanted.items())
    has = ", ".join(f"{k} {v:g}" for k, v in largest.items())
    raise errors.ValidationError(
        f"{name} asks a node for {asked} (the service's runner.resources and accelerator), "
        f"and no node of the Ray cluster has that much (the most any has: {has}); ask for "
        "less, or add nodes that have it",
        field="runner.resources",
    )


class ReplicaActor:
    """The Ray actor that runs one replica process on its node (not for users)."""

    def __init__(
        self,
        argv: list[str],
        name: str,
        secret: str,
        environment: dict[str, str],
        log_path: str | None,
        sandbox: Job | None,
    ) -> None:
        import ray
        from assay.inference.protocol import REPLICA_SECRET_ENV

        host: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        argv = list(argv)
        if "--host" in argv:  # the replica server's own flag: listen where others reach it
            argv[argv.index("--host") + 1] = host
        log = Path(log_path) if log_path else None
        if log is not None:
            try:
                log.parent.mkdir(parents=True, exist_ok=True)
            except OSError:
                log = None  # the session's directory is not shared with this node
        env = None if sandbox is not None else {**os.environ, **environment}
        self.replica = ProcessReplica(
            argv, name=name, env=env, log_path=log, host=host, sandbox=sandbox
        )
        self.replica.secret = secret
        self.replica._env[REPLICA_SECRET_ENV] = secret
        self.node = ray.get_runtime_context().get_node_id()

    def start(self) -> dict[str, Any]:
        self.replica.start()
        return {"pid": self.replica.pid, "node": self.node}

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        try:
            self.replica.wait_ready(timeout)
        except ReplicaStartError as exc:
            return {"error": str(exc), "returncode": exc.returncode, "tail": exc.tail}
        return {"url": self.replica.url, "declared": self.replica.declared}

    def alive(self) -> bool:
        return self.replica.alive()

    def returncode(self) -> int | None:
        return self.replica.returncode

    def log_tail(self, n: int) -> str:
        return self.replica.log_tail(n)

    def stop(self, timeout: float) -> None:
        self.replica.stop(timeout)


_ACTOR_CLASS: list[Any] = []


def _actor_class() -> Any:
    """:class:`ReplicaActor` as a Ray actor class (made once; never restarted by Ray: a
    replica that dies is evidence about the system under test, see ``sessions.py``)."""
    import ray

    if not _ACTOR_CLASS:
        _ACTOR_CLASS.append(ray.remote(max_restarts=0)(ReplicaActor))
    return _ACTOR_CLASS[0]


class RayReplica(ProcessReplica):
    """A replica whose process runs in a :class:`ReplicaActor` placed by Ray with
    ``resources`` (see the module doc); the same interface as a
    :class:`~assay.inference.replicas.ProcessReplica`. ``environment`` holds the variables it
    needs beside the node's own (with ``sandbox``, instead of them)."""

    def __init__(
        self,
        argv: list[str],
        *,
        name: str,
        resources: dict[str, float],
        environment: dict[str, str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        sandbox: Job | None = None,
    ) -> None:
        super().__init__(argv, name=name, env={}, log_path=log_path, sandbox=sandbox)
        self.resources = dict(resources)
        """The Ray options the actor was placed with (``num_cpus``, ``num_gpus``, ``memory``)."""
        self._environment = dict(environment or {})
        self._actor: Any = None
        self._pid: int | None = None
        self.node: str | None = None
        """The Ray node id of the node that runs it (once started)."""
        self._url: str | None = None
        self._lost: str | None = None
        self._code: int | None = None
        self._tail = ""

    def start(self) -> None:
        """Place the actor (waiting at most :data:`PLACE_TIMEOUT` s for a node with the
        resources) and start the replica process in it."""
        import ray

        _check_feasible(self.resources, self.name)
        actor_class = _actor_class()
        log = str(self._log_path) if self._log_path is not None else None
        self._actor = actor_class.options(**self.resources).remote(
            self.argv, self.name, self.secret, self._environment, log, self._sandbox
        )
        try:
            started = ray.get(self._actor.start.remote(), timeout=PLACE_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            self._kill()
            raise ReplicaStartError(
                f"replica {self.name!r} found no node with {self.resources} free within "
                f"{PLACE_TIMEOUT:g} s (the cluster is busy); try again later, or add nodes",
                name=self.name,
                returncode=None,
                tail="",
            ) from None
        except ray.exceptions.RayError as exc:
            self._kill()
            raise ReplicaStartError(
                f"replica {self.name!r} could not be started on the Ray cluster: {exc}",
                name=self.name,
                returncode=None,
                tail="",
            ) from None
        self._pid, self.node = started["pid"], started["node"]

    def wait_ready(self, timeout: float) -> None:
        import ray

        try:
            ready = ray.get(self._actor.wait_ready.remote(timeout), timeout=timeout + LOOK_TIMEOUT)
        except ray.exceptions.RayError as exc:
            self._kill()
            raise ReplicaStartError(
                f"replica {self.name!r} was lost while it started: {exc}",
                name=self.name,
                returncode=None,
                tail="",
            ) from None
        if "error" in ready:
            raise ReplicaStartError(
                ready["error"], name=self.name, returncode=ready["returncode"], tail=ready["tail"]
            )
        self._url, self.declared = ready["url"], ready["declared"]

    def _look(self, method: str, *args: Any) -> Any:
        """Ask the actor; None once it is lost (its node died), which is then remembered."""
        import ray

        if self._lost is not None or self._actor is None:
            return None
        try:
            return ray.get(getattr(self._actor, method).remote(*args), timeout=LOOK_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            return None
        except ray.exceptions.RayError as exc:
            self._lost = f"its Ray actor was lost ({type(exc).__name__}: its node died?)"
            return None

    def alive(self) -> bool:
        if self._lost is not None:
            return False
        answer = self._look("alive")
        return bool(answer) if self._lost is None else False

    @property
    def returncode(self) -> int | None:
        code = self._look("returncode")
        if code is not None:
            self._code = code
        return self._code

    def log_tail(self, n: int = 20) -> str:
        tail = self._look("log_tail", n)
        if isinstance(tail, str):
            self._tail = tail
        return self._tail + (f"\n({self._lost})" if self._lost else "")

    def stop(self, timeout: float = 5) -> None:
        if self._actor is None:
            return
        self._look("stop", timeout)
        self._kill()

    def _kill(self) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.kill(self._actor)

    @property
    def pid(self) -> int | None:
        """The replica process's pid, on its node."""
        return self._pid

    @property
    def url(self) -> str:
        if self._url is None:
            raise errors.ConflictError(f"replica {self.name!r} is not ready")
        return self._url

    def __repr__(self) -> str:
        return f"RayReplica({self.name!r}, node={self.node}, url={self._url})"
