"""``ServerSettings``: how ``assay serve`` runs, declared once, each setting with help text and
an ``ASSAY_*`` environment variable.

Precedence: an argument given to :meth:`ServerSettings.from_env` (the ``assay serve`` flags)
wins over the environment variable, which wins over the default. See
``docs/design/server.md`` for the table of settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import Field

from assay import errors
from assay.policy import Policy, SandboxLimits

__all__ = ["ENV_PREFIX", "ServerSettings"]

#: Every setting ``name`` is read from the environment variable ``ASSAY_<NAME>``.
ENV_PREFIX = "ASSAY_"

MiB = 1 << 20
GiB = 1 << 30

#: Where the platform keeps what is private to it, inside the data directory.
PRIVATE_DIR = ".assay"
SECRET_FILE = f"{PRIVATE_DIR}/secret.key"
REVOKED_FILE = f"{PRIVATE_DIR}/revoked-tokens.json"


class ServerSettings(pydantic.BaseModel):
    """The settings of an Assay server (``assay serve``)."""

    model_config = pydantic.ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, validate_default=True
    )

    host: str = "127.0.0.1"
    """The address to listen on (``0.0.0.0`` for every interface)."""
    port: int = Field(default=8000, ge=0, le=65535)
    """The TCP port to listen on."""
    data_dir: Path = Path("assay-data")
    """The directory of the platform's state: the SQLite database, the artifacts, the token
    signing secret (the same layout as ``LocalPlatform(storage_root=...)``)."""
    database_url: str | None = None
    """An SQLAlchemy database URL for the entity records (e.g. a PostgreSQL server); default:
    SQLite in the data directory."""
    storage: str | None = None
    """Where artifacts are kept: ``s3://bucket/prefix`` for an S3-compatible bucket
    (credentials from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, region from
    ``AWS_DEFAULT_REGION``, a server's URL from ``ASSAY_S3_ENDPOINT_URL``), or a local
    directory; default: the data directory. See ``docs/design/storage-s3.md``."""
    signing_secret: pydantic.SecretStr | None = None
    """The secret that signs tokens and artifact URLs (at least 16 characters); default: made
    on first start and kept in ``<data_dir>/.assay/secret.key``."""
    max_body_bytes: int = Field(default=64 * MiB, ge=1)
    """The largest JSON request body accepted (larger ones get 413)."""
    max_upload_bytes: int = Field(default=100 * GiB, ge=1)
    """The largest artifact accepted by a signed upload URL (larger ones get 413)."""
    public_url: str | None = None
    """The base URL that clients reach the server at (e.g. ``https://assay.example.org``), used
    in signed artifact URLs. Default: ``http://<host>:<port>`` when the server listens on a
    loopback host; otherwise required on a multi-user server (which refuses to start without
    it), and the URL of each request on a single-user one."""
    signed_url_seconds: int = Field(default=3600, ge=1)
    """How long a signed artifact URL stays valid."""
    executor: Literal["threads", "processes", "ray"] = "processes"
    """Where workflows run: ``threads`` (background threads of the server process),
    ``processes`` (a pool of worker processes, see ``docs/design/workflows.md``) or ``ray``
    (tasks of a Ray cluster, see ``docs/design/ray.md``)."""
    ray_address: str | None = None
    """The Ray cluster of the ``ray`` executor: ``host:port`` of its head (as ``ray start
    --head`` prints it) or ``auto``; default: ``RAY_ADDRESS``, else a Ray instance of the
    server's own."""
    workers: int | None = Field(default=None, ge=1)
    """The most worker processes of the ``processes`` executor (default: one per CPU, at most
    8)."""
    shutdown_timeout: float = Field(default=30.0, ge=0)
    """How long shutting down waits for running workflows before leaving them to be resumed
    at the next start."""
    log_level: str = "info"
    """The server's log level (``critical``, ``error``, ``warning``, ``info``, ``debug``)."""
    single_user: bool = False
    """One user (or users who trust each other) owns every account: user code need not be
    sandboxed, services may be on private addresses, credentials may name any server
    variable. Without it the server is multi-user and refuses to start without the sandbox."""
    sandbox: bool | None = None
    """Run user code (analyses, ``python``/``huggingface`` replicas) in the bubblewrap sandbox;
    default: on unless ``single_user``."""
    sandbox_memory_mb: int = Field(default=8192, ge=64)
    """The most address space of each sandboxed process, in MiB."""
    sandbox_cpu_seconds: int = Field(default=24 * 3600, ge=1)
    """The most CPU time of each sandboxed process, in seconds."""
    sandbox_processes: int = Field(default=512, ge=8)
    """The most processes and threads of one sandboxed job at once."""
    sandbox_file_mb: int = Field(default=65536, ge=1)
    """The largest file a sandboxed job may write, in MiB."""
    sandbox_env_allow: tuple[str, ...] = ()
    """Server environment variables passed into sandboxed jobs (comma-separated), beside the
    sandbox's own short list (``PATH``, ``LANG``, ``TZ``...)."""
    credential_env_allow: tuple[str, ...] = ()
    """Server environment variables that a runner credential may name (``{"env": NAME}``),
    comma-separated; a multi-user server allows none by default (accounts keep their
    credentials as secrets: ``assay secrets set``)."""
    allowed_hosts: tuple[str, ...] = ()
    """Hosts, addresses or networks (comma-separated: ``10.0.0.0/8``, ``models.internal``,
    ``127.0.0.1``) that ``http``/``openai`` services may be on beside public addresses; a
    multi-user server refuses loopback, link-local and private addresses unless listed."""
    inference_per_account: int = Field(default=8, ge=1)
    """The most inference calls (``POST /v0/inferencesessions/{id}/infer/...``) one account
    may have running at once; more wait for a slot (and get 429 after a while)."""

    @pydantic.field_validator(
        "sandbox_env_allow", "credential_env_allow", "allowed_hosts", mode="before"
    )
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @pydantic.field_validator("storage")
    @classmethod
    def _storage_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if value.startswith("s3://"):
            from assay.storage import S3Location

            try:
                S3Location.parse(value, setting="storage")
            except errors.ValidationError as exc:
                raise ValueError(str(exc)) from None
        elif "://" in value:
            raise ValueError(
                f"storage {value!r} is neither s3://BUCKET[/PREFIX] nor a local directory"
            )
        return value

    @pydantic.field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"public_url {value!r} must start with http:// or https://")
        return value.rstrip("/") if value else None

    @pydantic.field_validator("signing_secret")
    @classmethod
    def _long_enough(cls, value: pydantic.SecretStr | None) -> pydantic.SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 16:
            raise ValueError("signing_secret must be at least 16 characters")
        return value

    @pydantic.field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        levels = ("critical", "error", "warning", "info", "debug", "trace")
        if value.lower() not in levels:
            raise ValueError(f"log_level {value!r} is not one of {', '.join(levels)}")
        return value.lower()

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Each setting's environment variable, e.g. ``{"port": "ASSAY_PORT", ...}``."""
        return {name: ENV_PREFIX + name.upper() for name in cls.model_fields}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerSettings:
        """Settings from ``ASSAY_*`` environment variables (``environ``, default
        ``os.environ``), with ``overrides`` (those that are not None) taking precedence.

        Raises :class:`assay.errors.ValidationError` naming the variable or argument that is
        wrong."""
        environ = os.environ if environ is None else environ
        unknown = sorted(set(overrides) - set(cls.model_fields))
        if unknown:
            raise errors.ValidationError(
                f"unknown server setting {unknown[0]!r}; the settings are "
                f"{', '.join(cls.model_fields)}",
                field=unknown[0],
            )
        values: dict[str, Any] = {}
        source: dict[str, str] = {}
        for name, variable in cls.env_names().items():
            if overrides.get(name) is not None:
                values[name] = overrides[name]
                source[name] = name
            elif environ.get(variable):
                values[name] = environ[variable]
                source[name] = variable
        try:
            return cls.model_validate(values)
        except pydantic.ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            name = str(first["loc"][0]) if first.get("loc") else "settings"
            message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
            raise errors.ValidationError(
                f"server setting {source.get(name, name)}: {message}", field=name
            ) from None

    # -- derived -------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The data directory, absolute."""
        return self.data_dir.expanduser().resolve()

    def secret(self) -> bytes:
        """The signing secret: the one given, or the data directory's (made if missing)."""
        if self.signing_secret is not None:
            return self.signing_secret.get_secret_value().encode()
        from assay.core.tokens import load_or_create_secret

        return load_or_create_secret(self.root / SECRET_FILE)

    @property
    def multi_user(self) -> bool:
        """Whether accounts share this server without trusting each other."""
        return not self.single_user

    def policy(self) -> Policy:
        """What this server's accounts may do (:class:`assay.policy.Policy`)."""
        sandbox = self.multi_user if self.sandbox is None else self.sandbox
        return Policy(
            multi_user=self.multi_user,
            sandbox=sandbox,
            limits=SandboxLimits(
                memory_mb=self.sandbox_memory_mb,
                cpu_seconds=self.sandbox_cpu_seconds,
                processes=self.sandbox_processes,
                file_mb=self.sandbox_file_mb,
            ),
            env_allow=self.sandbox_env_allow,
            credential_env_allow=self.credential_env_allow if self.multi_user else None,
            allowed_hosts=self.allowed_hosts if self.multi_user else None,
            inference_per_account=self.inference_per_account,
        )

    def check_storage(self) -> None:
        """Open the artifact storage once, so that a missing bucket, missing credentials or
        an unreachable S3 server stop ``assay serve`` at once with a ValidationError naming
        the setting (never a traceback at the first request)."""
        if self.storage is None:
            return
        from assay.storage import open_storage

        open_storage(self.storage, root=self.root, setting="--storage (ASSAY_STORAGE)")

    def check_sandbox(self) -> None:
        """Raise :class:`assay.sandbox.SandboxUnavailableError` when this server must sandbox
        user code and cannot, saying how to fix it."""
        if not self.policy().sandbox:
            return
        from assay import sandbox

        why = sandbox.available()
        if why is not None:
            raise sandbox.SandboxUnavailableError(
                "a multi-user server runs every account's code in the sandbox, but "
                f"{why}. To serve accounts that trust each other without it, start the "
                "server with --single-user (ASSAY_SINGLE_USER=1)"
            )

    def signed_url_base(self) -> str | None:
        """The base of signed artifact URLs: ``public_url``, or ``http://<host>:<port>`` on a
        loopback host; None where the request's URL serves (a single-user server on another
        host). Never the request's ``Host`` header on a multi-user server: a client could
        make the server sign URLs that lead elsewhere (``docs/design/server.md``)."""
        if self.public_url:
            return self.public_url
        import ipaddress

        host = self.host.strip("[]")
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host.lower() == "localhost"
        if loopback and self.port != 0:
            shown = f"[{host}]" if ":" in host else host
            return f"http://{shown}:{self.port}"
        return None

    def check_public_url(self) -> None:
        """Refuse to serve several accounts without knowing the server's public URL
        (:meth:`signed_url_base`): ValidationError naming the setting and the fix."""
        if self.multi_user and self.signed_url_base() is None:
            where = "port 0" if self.port == 0 else f"host {self.host!r}"
            raise errors.ValidationError(
                f"a multi-user server on {where} needs its public URL, the base of the signed "
                "artifact URLs it gives out (it never takes it from a request's Host header): "
                "set ASSAY_PUBLIC_URL or --public-url (e.g. https://assay.example.org), or "
                "listen on a loopback host and port (then http://<host>:<port>), or run "
                "--single-user",
                field="public_url",
            )

    @property
    def revoked_tokens_path(self) -> Path:
        """The file of revoked token ids."""
        return self.root / REVOKED_FILE
