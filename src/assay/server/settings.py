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
    signing_secret: pydantic.SecretStr | None = None
    """The secret that signs tokens and artifact URLs (at least 16 characters); default: made
    on first start and kept in ``<data_dir>/.assay/secret.key``."""
    max_body_bytes: int = Field(default=64 * MiB, ge=1)
    """The largest JSON request body accepted (larger ones get 413)."""
    max_upload_bytes: int = Field(default=100 * GiB, ge=1)
    """The largest artifact accepted by a signed upload URL (larger ones get 413)."""
    public_url: str | None = None
    """The base URL that clients reach the server at (e.g. ``https://assay.example.org``), used
    in signed artifact URLs; default: the URL of each request."""
    signed_url_seconds: int = Field(default=3600, ge=1)
    """How long a signed artifact URL stays valid."""
    executor: Literal["threads", "processes"] = "processes"
    """Where workflows run: ``threads`` (background threads of the server process) or
    ``processes`` (a pool of worker processes, see ``docs/design/workflows.md``)."""
    workers: int | None = Field(default=None, ge=1)
    """The most worker processes of the ``processes`` executor (default: one per CPU, at most
    8)."""
    shutdown_timeout: float = Field(default=30.0, ge=0)
    """How long shutting down waits for running workflows before leaving them to be resumed
    at the next start."""
    log_level: str = "info"
    """The server's log level (``critical``, ``error``, ``warning``, ``info``, ``debug``)."""

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
    def revoked_tokens_path(self) -> Path:
        """The file of revoked token ids."""
        return self.root / REVOKED_FILE
