"""Signed tokens (JWT, HS256): session tokens now, API keys later.

A token's claims carry an APIKey as the reference does: ``jti`` (id), ``sub``
(``<kind>/<id>``), ``iat``, ``exp`` and ``grants`` (``[{resources, functions, accounts,
entities}]``, ``"*"`` a wildcard). A token made with another token (a session token made with
an account's token: its :class:`Minter`) also carries ``lineage``, the ids of the tokens that
made it, so that revoking one of them revokes it too (``docs/design/server.md``, "Tokens").
The signing secret is generated on first use and kept in the platform's data directory
(``.assay/secret.key``, mode 0600).

HS256 is small enough to implement with the standard library (RFC 7519 / 7515), which keeps
``import assay`` light.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay import errors

__all__ = ["Minter", "TokenSigner", "load_or_create_secret"]

_HEADER = {"alg": "HS256", "typ": "JWT"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_secret(path: Path) -> bytes:
    """The signing secret kept at ``path``; made (32 random bytes, mode 0600) if missing."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # atomic, and never replaces a secret another process made first
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


@dataclass(frozen=True)
class Minter:
    """The verified token a new token is made with. The new token never outlives it (its
    expiry is at most ``expires``), never allows more (each of its grants must be allowed by
    ``grants``), and is revoked with it (it carries ``lineage`` + ``token_id``)."""

    token_id: str
    """The minter's id (``jti``)."""
    expires: int
    """The minter's expiry (epoch seconds)."""
    grants: tuple[Any, ...]
    """The minter's grants (:class:`~assay.schema.platform.AccessGrant`)."""
    lineage: tuple[str, ...] = ()
    """Ids of the tokens that made the minter, oldest first."""

    def allows(
        self, resource: str, function: str, account: str | None, entity_id: str | None
    ) -> bool:
        """True if the minter may ``function`` on ``resource`` for this entity."""
        return any(g.allows(resource, function, account, entity_id) for g in self.grants)

    @property
    def child_lineage(self) -> list[str]:
        """The ``lineage`` of a token this one makes."""
        return [*self.lineage, self.token_id]


class TokenSigner:
    """Signs and verifies tokens with one secret."""

    def __init__(self, secret: bytes, *, clock: Any = time.time) -> None:
        if len(secret) < 16:
            raise errors.ValidationError("the token signing secret must be at least 16 bytes")
        self._secret = secret
        self._clock = clock

    def sign(
        self,
        *,
        subject: str,
        grants: list[dict[str, Any]],
        expires: float,
        id: str | None = None,
        lineage: Sequence[str] = (),
    ) -> str:
        """A token for ``subject`` carrying ``grants``, valid until ``expires`` (epoch s);
        ``lineage``: the ids of the tokens that made it (revoking any of them revokes it)."""
        claims: dict[str, Any] = {
            "jti": id or uuid.uuid4().hex,
            "sub": subject,
            "iat": int(self._clock()),
            "exp": int(expires),
            "grants": grants,
        }
        if lineage:
            claims["lineage"] = list(lineage)
        head = _b64(json.dumps(_HEADER, separators=(",", ":")).encode())
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self._secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{_b64(signature)}"

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid, unexpired token; :class:`assay.errors.AuthenticationError`
        otherwise."""
        if not isinstance(token, str) or token.count(".") != 2:
            raise errors.AuthenticationError("the token is malformed (expected a signed JWT)")
        head, body, signature = token.split(".")
        expected = hmac.new(self._secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        try:
            given = _unb64(signature)
            header = json.loads(_unb64(head))
            claims: dict[str, Any] = json.loads(_unb64(body))
        except (ValueError, json.JSONDecodeError):
            raise errors.AuthenticationError(
                "the token is malformed (expected a signed JWT)"
            ) from None
        if not hmac.compare_digest(given, expected) or header.get("alg") != "HS256":
            raise errors.AuthenticationError(
                "the token's signature is not valid on this platform (it was made elsewhere, or altered)"
            )
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= self._clock():
            raise errors.AuthenticationError(
                "the token has expired; ask for a new one (e.g. inferencesessions.token(id))"
            )
        return claims
