"""The platform core: the API groups over one store, one storage and one engine.

``LocalPlatform`` is this core in-process with embedded defaults; the server is this core
behind HTTP (DESIGN §2).
"""

from __future__ import annotations

import secrets as _secrets
from pathlib import Path
from typing import Any

from assay.core.datasets import Datasets
from assay.core.kinds import (
    Evaluations,
    Families,
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
from assay.schema.status import Status
from assay.storage import ArtifactStorage
from assay.store import EntityStore

__all__ = ["PlatformCore"]


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
    ) -> None:
        self.store = store
        self.storage = storage
        self.engine = Engine(
            store,
            storage,
            executor=executor,
            specs=default_specs(),
            platform=self,
            claim_ttl=claim_ttl,
        )
        self.signer = TokenSigner(signing_secret or _secrets.token_bytes(32))
        self.secrets = SecretStore(secrets_path) if secrets_path else None
        self.default_account = default_account
        self._cache_path = cache_path
        self._response_cache: ResponseCache | None = None
        self.sessions = SessionManager(self.engine, secret=self._secret)
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

    def _secret(self, name: str) -> str:
        if self.secrets is None:
            from assay import errors

            raise errors.NotFoundError(
                f"this platform keeps no secrets (asked for {name!r})", kind="Secret", id=name
            )
        return self.secrets.get(name)

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
