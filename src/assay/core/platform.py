"""The platform core: the API groups over one store, one storage and one engine.

``LocalPlatform`` is this core in-process with embedded defaults; the server is this core
behind HTTP (DESIGN §2). A :class:`CoreConfig` describes a core so that another process can
open the same platform (``PlatformCore.from_config``); a :class:`PlatformFactory` is how
the workers of the ``processes`` and ``ray`` executors do it: the engine is handed one and
sends it to them, so that the engine never imports this package (see
``docs/design/workflows.md``).
"""

from __future__ import annotations

import dataclasses
import secrets as _secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay.core.datasets import Datasets
from assay.core.families import Families
from assay.core.kinds import (
    Evaluations,
    InferenceServices,
    InferenceSessions,
    Measurements,
    Methods,
    Reports,
    SafetyCases,
)
from assay.core.models import Models
from assay.core.modules import Modules
from assay.core.scores import Scores
from assay.core.secrets import SecretStore
from assay.core.tokens import TokenSigner
from assay.core.workflows import default_specs
from assay.engine import Engine, Executor, WorkflowSpec
from assay.evaluation.cache import ResponseCache
from assay.inference.sessions import SessionManager
from assay.policy import Policy
from assay.schema.status import Status
from assay.storage import ArtifactStorage, open_storage
from assay.store import EntityStore

__all__ = ["CoreConfig", "PlatformCore", "PlatformFactory"]


@dataclass(frozen=True)
class CoreConfig:
    """Where a platform core keeps its state: enough to open the same platform again, in this
    process or another one. Picklable, and convertible to and from JSON
    (:meth:`to_json`, :meth:`from_json`).

    >>> config = CoreConfig("sqlite:////data/assay.db", Path("/data"))   # doctest: +SKIP
    >>> core = PlatformCore.from_config(config)                           # doctest: +SKIP
    """

    store_url: str
    """The SQLAlchemy URL of the entity store, password included (``sqlite:///path/assay.db``,
    ``postgresql+psycopg://user:password@host/assay``). ``repr`` hides the password."""
    storage_root: Path
    """The directory of the artifact storage (``<storage_root>/<entity id>/<path>``), unless
    ``storage_url`` names another."""
    secret_file: Path | None = None
    """The file that keeps the token-signing secret (made on first use). None: a random
    secret per process, so tokens signed by one process are refused by another."""
    secrets_path: Path | None = None
    """The JSON file of named runner credentials (None: the platform keeps no secrets)."""
    cache_path: Path | None = None
    """The SQLite file of the response cache (None: no response cache)."""
    default_account: str | None = None
    """The account requests act for when they name none."""
    claim_ttl: float = 30.0
    """Seconds a workflow claim lasts without a heartbeat (see ``Engine``)."""
    policy: Policy = dataclasses.field(default_factory=Policy)
    """What the platform's accounts may do (sandbox, credentials, hosts; see
    :mod:`assay.policy`)."""
    storage_url: str | None = None
    """Where the artifacts are kept when not in ``storage_root``: ``s3://bucket/prefix`` for an
    S3-compatible bucket (:class:`assay.storage.S3Storage`; ``storage_root`` then keeps the
    rest, and the local copies analyses read), or another local directory. None:
    ``storage_root``."""

    def to_json(self) -> dict[str, Any]:
        """The configuration as a JSON object (paths as strings)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["policy"] = self.policy.to_json()
        return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CoreConfig:
        """The configuration that :meth:`to_json` wrote."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            from assay import errors

            raise errors.ValidationError(
                f"unknown CoreConfig fields {unknown}; the fields are {sorted(known)}"
            )
        paths = ("storage_root", "secret_file", "secrets_path", "cache_path")
        values: dict[str, Any] = {
            k: Path(v) if k in paths and v is not None else v for k, v in data.items()
        }
        values["policy"] = Policy.from_json(values.get("policy"))
        return cls(**values)

    def __repr__(self) -> str:
        import sqlalchemy as sa

        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        try:
            values["store_url"] = sa.make_url(self.store_url).render_as_string(hide_password=True)
        except Exception:  # not a URL: do not echo what may hold a password
            values["store_url"] = "<not a database URL>"
        return "CoreConfig(" + ", ".join(f"{k}={v!r}" for k, v in values.items()) + ")"


@dataclass(frozen=True)
class PlatformFactory:
    """Builds a worker's platform core from ``config``: the
    :class:`~assay.engine.executors.CoreFactory` that a core opened with
    :meth:`PlatformCore.from_config` hands its engine (picklable: it travels to the workers of
    the ``processes`` and ``ray`` executors, which call it)."""

    config: CoreConfig
    """The platform the workers open."""

    def __call__(self, *, executor: Executor, owner: str) -> PlatformCore:
        """Open the platform with ``executor``, holding claims as ``owner``."""
        return PlatformCore.from_config(self.config, executor=executor, owner=owner)

    def check_shared(self, executor: str, *, machines: bool = False) -> None:
        """Refuse what other processes (or, with ``machines``, other machines) cannot open:
        an in-memory SQLite store, and across machines any SQLite file (it is on one
        machine's disk; use PostgreSQL)."""
        import sqlalchemy as sa

        from assay import errors

        url = sa.make_url(self.config.store_url)
        if url.get_backend_name() != "sqlite":
            return
        if url.database in (None, "", ":memory:"):
            raise errors.ValidationError(
                f"the {executor} executor needs a store that other processes can open; an "
                "in-memory SQLite store (sqlite://) is private to one process: use a file "
                "(sqlite:///path/assay.db) or PostgreSQL",
                field="store_url",
            )
        if machines:
            raise errors.ValidationError(
                f"the {executor} executor runs workflows on other machines, which cannot open "
                f"the SQLite file {url.database}: give the platform a PostgreSQL store "
                "(--database-url / ASSAY_DATABASE_URL, or LocalPlatform(database_url=...)), "
                "or run a cluster of one machine",
                field="store_url",
            )


class PlatformCore:
    """Every API group, sharing one store, one artifact storage and one engine."""

    def __init__(
        self,
        store: EntityStore,
        storage: ArtifactStorage,
        *,
        executor: Executor | None = None,
        claim_ttl: float = 30.0,
        signing_secret: bytes | None = None,
        secrets_path: Path | None = None,
        cache_path: Path | None = None,
        default_account: str | None = None,
        owner: str | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.store = store
        self.policy = policy or Policy()
        """What the platform's accounts may do (:mod:`assay.policy`)."""
        self.storage = storage
        self.config: CoreConfig | None = None
        """The configuration this core was opened from (None: built from objects)."""
        self.engine = Engine(
            store,
            storage,
            executor=executor,
            specs=default_specs(),
            platform=self,
            claim_ttl=claim_ttl,
            owner=owner,
        )
        self.signer = TokenSigner(signing_secret or _secrets.token_bytes(32))
        self.secrets = (
            SecretStore(secrets_path, legacy_account=default_account) if secrets_path else None
        )
        """The secrets of every account (:mod:`assay.core.secrets`); None: none kept."""
        self.default_account = default_account
        self._cache_path = cache_path
        self._response_cache: ResponseCache | None = None
        self.sessions = SessionManager(self.engine, secret=self.secret)
        self.engine.register(
            WorkflowSpec(
                "InferenceSession", self.sessions.start, success=Status.Ready, failure=Status.Error
            )
        )
        self.datasets = Datasets(self)
        self.evaluations = Evaluations(self)
        self.families = Families(self)
        self.inferenceservices = InferenceServices(self)
        self.inferencesessions = InferenceSessions(self)
        self.measurements = Measurements(self)
        self.methods = Methods(self)
        self.models = Models(self)
        self.modules = Modules(self)
        self.reports = Reports(self)
        self.safetycases = SafetyCases(self)
        self.scores = Scores(self)

    @classmethod
    def from_config(
        cls, config: CoreConfig, *, executor: Executor | None = None, owner: str | None = None
    ) -> PlatformCore:
        """Open the platform that ``config`` describes. ``executor``: where its workflows run
        (default: inline); ``owner``: the owner of its workflow claims (default: this
        process; a worker of the ``processes`` executor passes its parent's)."""
        from assay.core.tokens import load_or_create_secret

        store = EntityStore(config.store_url)
        try:
            secret = load_or_create_secret(config.secret_file) if config.secret_file else None
            core = cls(
                store,
                open_storage(config.storage_url, root=config.storage_root),
                executor=executor,
                claim_ttl=config.claim_ttl,
                signing_secret=secret,
                secrets_path=config.secrets_path,
                cache_path=config.cache_path,
                default_account=config.default_account,
                owner=owner,
                policy=config.policy,
            )
        except BaseException:
            store.close()
            raise
        core.config = config
        core.engine.factory = PlatformFactory(config)
        return core

    def register_workflow(self, spec: WorkflowSpec) -> None:
        """Set how the engine runs ``spec.kind`` (used by the packages that run sessions,
        evaluations and analyses)."""
        self.engine.register(spec)

    def group(self, kind: str) -> Any:
        """The API group of an entity kind."""
        for group in (
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
        ):
            if group.kind == kind:
                return group
        raise KeyError(kind)

    def response_cache(self) -> ResponseCache:
        """The platform's response cache (opened on first use)."""
        if self._response_cache is None:
            if self._cache_path is None:
                from assay import errors

                raise errors.ValidationError("this platform has no response cache (no cache_path)")
            self._response_cache = ResponseCache(self._cache_path)
        return self._response_cache

    def secret(self, account: str, name: str) -> str:
        """The value of the secret ``name`` of ``account`` (the account of the service that
        names it): a service never reads another account's secret, and a missing one and
        another account's give the same NotFoundError. On a platform that is not multi-user
        (the embedded one), a name the account lacks is also looked up in the platform's own
        account (``default_account``), whose secrets serve every account its user writes."""
        from assay import errors

        if self.secrets is None:
            raise errors.NotFoundError(
                f"this platform keeps no secrets (asked for {name!r})", kind="Secret", id=name
            )
        own = self.default_account
        if self.policy.multi_user or own is None or own == account:
            return self.secrets.get(account, name)
        try:
            return self.secrets.get(account, name)
        except errors.NotFoundError as missing:
            if name in self.secrets.names(own):
                return self.secrets.get(own, name)
            raise missing from None

    def resume(self) -> list[str]:
        """Continue every workflow a killed process left unfinished (see
        :meth:`assay.engine.Engine.resume`), and restart the replicas of sessions whose
        process died."""
        return self.engine.resume() + self.sessions.resume()

    def close(self) -> None:
        self.sessions.close()
        self.engine.close()
        self.store.close()
        if self._response_cache is not None:
            self._response_cache.close()
