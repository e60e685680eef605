"""``LocalPlatform``: the Assay platform embedded in a Python process, with no set-up.

State lives under ``storage_root``: the entity records in ``assay.db`` (SQLite, WAL mode) and
each entity's artifacts in ``<storage_root>/<entity id>/``. A second ``LocalPlatform`` on the
same directory (in this process or another) sees everything the first wrote.

With ``remote_client=Client(...)`` the platform also reaches an Assay server: ``fetch(id)`` on
every group copies an entity from it, and ``evaluations.local_evaluation`` sends a local data
set to a session running there (:mod:`assay.local.remote`; ``docs/design/client.md``,
"Remote mode").
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from assay import errors
from assay import provenance as provenance_
from assay._logging import logger
from assay.core import PlatformCore
from assay.core.platform import CoreConfig, PlatformFactory
from assay.core.secrets import AccountSecrets
from assay.engine import Executor
from assay.policy import Policy
from assay.schema import ids
from assay.schema.base import LABEL_VALUE_PATTERN

if TYPE_CHECKING:
    from assay.client import Client

__all__ = ["DATABASE_FILE", "DEFAULT_ACCOUNT", "EXECUTORS", "LocalPlatform"]

#: The account used when none is given (``ASSAY_ACCOUNT`` overrides it).
DEFAULT_ACCOUNT = "local"
DATABASE_FILE = "assay.db"
#: The executors that ``LocalPlatform(executor=...)`` knows by name.
EXECUTORS = ("inline", "processes", "ray")


class LocalPlatform:
    """The platform in-process: the same API groups and method names as ``Client``.

    >>> platform = LocalPlatform(storage_root="assay-data")      # doctest: +SKIP
    >>> platform.datasets.query(name="digits")                    # doctest: +SKIP

    ``executor`` chooses where workflows run:

    - ``"inline"`` (the default) runs them in the calling thread, so ``create()`` and
      ``upload_*()`` return when the work is done (with a progress bar in a terminal or
      Jupyter; ``ASSAY_PROGRESS=0`` hides it: :mod:`assay.local.progress`);
    - ``"processes"`` runs them in a pool of ``workers`` worker processes (default: one per
      CPU, at most 8): ``create()`` returns at once with the entity ``Admitted`` (or
      ``Created`` while it waits for a dependency), and ``<group>.wait(id)`` blocks until it
      is done. See :class:`assay.engine.processes.ProcessExecutor`;
    - ``"ray"`` runs them as tasks of the Ray cluster at ``ray_address`` (``host:port`` of its
      head, or ``auto``; default: ``RAY_ADDRESS``, else a Ray instance of this process's own),
      as ``"processes"`` does: evaluations are cut into shards spread over the cluster. The
      store must be one every node opens (a SQLite file works on a cluster of one machine; use
      ``database_url=`` PostgreSQL for several), and so must the storage. Needs
      ``pip install 'assay[ray]'``. See :class:`assay.engine.ray_executor.RayExecutor` and
      ``docs/design/ray.md``;
    - an :class:`~assay.engine.Executor` instance is used as it is.

    Opening a platform where a process that stopped (killed, or its machine restarted) left
    work unfinished says so on stderr; with ``"processes"`` it resumes that work at once, with
    ``"inline"`` :meth:`resume` runs it. A Ctrl-C ends the running work ``Terminated``
    (``Interrupted``), keeping what it wrote.

    ``storage`` keeps the artifacts elsewhere than ``storage_root``: ``"s3://bucket/prefix"``
    for an S3-compatible bucket (credentials from ``AWS_ACCESS_KEY_ID`` and
    ``AWS_SECRET_ACCESS_KEY``, a server's URL from ``ASSAY_S3_ENDPOINT_URL``; checked at once;
    ``docs/design/storage-s3.md``). ``storage_root`` still holds the database and the local
    copies that analyses read.

    ``remote_client`` (an :class:`assay.client.Client`) is the server that ``fetch(id)``
    downloads entities from and whose sessions ``evaluations.local_evaluation`` uses; the
    platform does not close it.

    ``sandbox=True`` runs the user code of analyses and of ``python``/``huggingface``
    replicas in the sandbox a multi-user server uses (:mod:`assay.sandbox`, bubblewrap):
    useful to try code as a server will run it, or to run code one did not write. The
    default runs it as the calling user, which is what one person's own code needs.
    """

    def __init__(
        self,
        storage_root: str | os.PathLike[str] = "assay-data",
        *,
        account: str | None = None,
        database_url: str | None = None,
        storage: str | None = None,
        executor: Executor | Literal["inline", "processes", "ray"] | None = None,
        workers: int | None = None,
        ray_address: str | None = None,
        remote_client: Client | None = None,
        sandbox: bool = False,
    ) -> None:
        import re

        if remote_client is not None:
            _check_client(remote_client)

        self._root = Path(storage_root).expanduser().resolve()
        self._root.mkdir(parents=True, exist_ok=True)
        account = account or os.environ.get("ASSAY_ACCOUNT") or DEFAULT_ACCOUNT
        if not re.match(LABEL_VALUE_PATTERN, account) or len(account) > 63:
            raise errors.ValidationError(
                f"account {account!r} is not a valid account name: use up to 63 letters, digits, "
                "'-', '_' or '.', starting and ending with a letter or digit",
                field="account",
                value=account,
            )
        self._account = account
        self._closed = False
        private = self._root / ".assay"
        self._config = CoreConfig(
            store_url=database_url or _sqlite_url(self._root / DATABASE_FILE),
            storage_root=self._root,
            secret_file=private / "secret.key",
            secrets_path=private / "secrets.json",
            cache_path=private / "cache" / "responses.db",
            default_account=account,
            policy=Policy(sandbox=sandbox),
            storage_url=storage,
        )
        if sandbox:
            from assay.sandbox import require

            require("LocalPlatform(sandbox=True): user code")
        self._core = PlatformCore.from_config(
            self._config, executor=_executor(executor, workers, ray_address, self._config)
        )
        core = self._core
        if executor is None or executor == "inline":  # create() blocks: show its progress
            from assay.local.progress import install

            install(core.engine)
        self.datasets = core.datasets
        self.evaluations = core.evaluations
        self.families = core.families
        self.inferenceservices = core.inferenceservices
        self.inferencesessions = core.inferencesessions
        self.measurements = core.measurements
        self.methods = core.methods
        self.models = core.models
        self.modules = core.modules
        self.reports = core.reports
        self.safetycases = core.safetycases
        self.scores = core.scores
        self._pipelines: Any = None
        self._remote = remote_client
        if remote_client is not None:
            from assay.local.remote import ClientSource

            source = ClientSource(self, remote_client)
            for group in self._groups():
                group.remote_source = source
        self._announce_interrupted()

    def _announce_interrupted(self) -> None:
        """Say (log and stderr) what a process that stopped left unfinished here. The
        ``processes`` executor resumes it now; others would run it in this constructor, so
        the line says to call :meth:`resume` (``docs/design/workflows.md``, "Reopening")."""
        from assay.engine.engine import orphans_text

        orphans = self._core.engine.orphans()
        if not orphans:
            return
        background = self._core.engine.executor.background
        if background:
            line = f"resuming {orphans_text(orphans)}..."
        else:
            line = (
                f"{orphans_text(orphans)} left unfinished by a process that stopped; call "
                f"platform.resume() to continue {'it' if len(orphans) == 1 else 'them'}"
            )
        logger("assay.local").warning("%s", line)
        print(f"assay: {line}", file=sys.stderr, flush=True)
        if background:
            self.resume()

    def _groups(self) -> list[Any]:
        """The groups of entity kinds (every group but ``scores``)."""
        return [
            self.datasets,
            self.evaluations,
            self.families,
            self.inferenceservices,
            self.inferencesessions,
            self.measurements,
            self.methods,
            self.models,
            self.modules,
            self.reports,
            self.safetycases,
        ]

    @property
    def remote(self) -> Client | None:
        """The server's client given as ``remote_client`` (None: the platform has none)."""
        return self._remote

    @property
    def account(self) -> str:
        """The account this platform acts for by default."""
        return self._account

    @property
    def storage_root(self) -> Path:
        """The directory that holds this platform's state."""
        return self._root

    @property
    def secrets(self) -> AccountSecrets:
        """Named credentials for runners (``{"credential": {"secret": name}}``), kept out of
        entities: ``secrets.set(name, value)``, ``secrets.names()``, ``secrets.delete(name)``.
        They are this platform's account's; its services of other accounts use them too (on
        a server, a service uses its own account's secrets only)."""
        assert self._core.secrets is not None  # always set by LocalPlatform
        return self._core.secrets.account(self._account)

    @property
    def config(self) -> CoreConfig:
        """What another process needs to open this platform (its store, storage and secrets)."""
        return self._config

    @property
    def core(self) -> PlatformCore:
        """The platform core (for extensions that register workflow runners)."""
        return self._core

    def entity_path(self, id: str) -> Path:
        """The directory that holds the artifacts of entity ``id``."""
        if not ids.is_entity_id(id):
            raise errors.ValidationError(
                f"{id!r} is not an entity id (32 lowercase hex digits)", field="id", value=id
            )
        return self._root / id

    def link_entity(self, package: str | os.PathLike[str], id: str | None = None) -> str:
        """Make ``<storage_root>/<id>`` a link to the directory ``package`` (an "editable"
        package: refer to it by a stable id while its files change). ``id`` becomes the
        linked package's id; without it a new one is made. Returns the id.

        Unlike the reference platform, which takes any string, an id given here must be an
        Assay entity id: 32 lowercase hex digits (e.g. from
        :func:`assay.schema.ids.generate_entity_id`)."""
        if id is not None and not ids.is_entity_id(id):
            raise errors.ValidationError(
                f"link_entity: id {id!r} is not an entity id: Assay ids are 32 lowercase hex "
                "digits (unlike the reference platform, which takes any string here); leave id "
                "out to get a new one, or make one with assay.schema.ids.generate_entity_id()",
                field="id",
                value=id,
            )
        id = id or ids.generate_entity_id()
        self._core.storage.link(id, Path(package).expanduser().resolve())
        return id

    def provenance(self, id: str) -> dict[str, Any] | None:
        """Entity ``id``'s provenance block (:mod:`assay.provenance`): the digests of its
        output files, inputs, system, method and settings; None where it recorded none.
        :class:`assay.errors.NotFoundError` for an unknown id."""
        self._core.store.require(id)
        return provenance_.read(self._core, id)

    def verify(self, id: str) -> provenance_.Verification:
        """Re-hash the chain from entity ``id`` (a Score's analysis, a SafetyCase, a
        Measurement, an Evaluation, a Dataset) back to its data: every recorded file against
        its bytes, every input's digest, every Module's files. ``.ok``; ``.mismatches`` name
        the entity, the artifact and both digests; ``print()`` it for a report."""
        return provenance_.verify(self._core, id)

    def resume(self) -> list[str]:
        """Continue every workflow that a killed process left unfinished; returns their ids.
        (With ``executor="processes"`` they are handed to the pool: wait for them.) Opening a
        platform says what there is to resume; with ``processes`` it resumes it at once."""
        return self._core.resume()

    def close(self) -> None:
        """Stop the replicas this process runs and release the database; further calls fail.
        With ``executor="processes"``, first wait for the workflows in the pool to finish.
        Closing twice is harmless."""
        if not self._closed:
            self._closed = True
            if self._pipelines is not None:
                self._pipelines.close()
            self._core.close()

    @property
    def pipelines(self) -> Any:
        """Serving pipelines (:class:`assay.pipelines.group.Pipelines`), each with its
        inference log: ``platform.pipelines.create(name)``."""
        if self._pipelines is None:
            from assay.pipelines.group import Pipelines

            self._pipelines = Pipelines(self)
        return self._pipelines

    def __enter__(self) -> LocalPlatform:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        interrupt = getattr(self._core.engine.executor, "interrupt", None)
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt) and interrupt:
            interrupt()  # Ctrl-C: stop the pool's work now rather than wait for it in close()
        self.close()

    def __repr__(self) -> str:
        return f"LocalPlatform(storage_root={str(self._root)!r}, account={self._account!r})"

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"LocalPlatform has no attribute {name!r}; its API groups are datasets, "
            "evaluations, families, inferenceservices, inferencesessions, measurements, methods, "
            "models, modules, pipelines, reports, safetycases and scores"
        )


def _check_client(client: Any) -> None:
    from assay.client import Client

    if not isinstance(client, Client):
        raise errors.ValidationError(
            f"remote_client must be an assay.client.Client, got {type(client).__name__}; "
            "pass remote_client=Client(endpoint, api_token)",
            field="remote_client",
        )


def _sqlite_url(path: Path) -> str:
    import sqlalchemy as sa

    return sa.URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)


def _executor(
    executor: Executor | str | None,
    workers: int | None,
    ray_address: str | None,
    config: CoreConfig,
) -> Executor | None:
    """The executor that ``LocalPlatform(executor=..., workers=..., ray_address=...)`` asks
    for."""
    if ray_address is not None and executor != "ray":
        raise errors.ValidationError(
            f"ray_address={ray_address!r} applies to executor='ray' only (got executor="
            f"{executor!r}); drop ray_address or use executor='ray'",
            field="ray_address",
            value=ray_address,
        )
    if executor == "processes":
        from assay.engine.processes import ProcessExecutor

        return ProcessExecutor(PlatformFactory(config), workers=workers)
    if executor == "ray" and workers is None:
        from assay.engine.ray_executor import RayExecutor

        factory = PlatformFactory(config)
        factory.check_shared("ray")
        return RayExecutor(ray_address, factory=factory, setting="LocalPlatform(ray_address=...)")
    if workers is not None:
        raise errors.ValidationError(
            f"workers={workers!r} applies to executor='processes' only (got executor="
            f"{executor!r}); drop workers or use executor='processes'",
            field="workers",
            value=workers,
        )
    if executor is None or executor == "inline":
        return None
    if isinstance(executor, Executor):
        return executor
    raise errors.ValidationError(
        f"unknown executor {executor!r}; use one of {', '.join(map(repr, EXECUTORS))} or an "
        "assay.engine.Executor instance",
        field="executor",
        value=executor,
    )
