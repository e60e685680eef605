"""API tokens: issuing, verifying and revoking them.

An API token is a JWT (HS256, signed with the platform's secret by
:class:`assay.core.tokens.TokenSigner`) whose claims carry an APIKey as the reference does:
``jti`` (the token's id), ``sub`` (``Account/<name>`` for an account's token,
``InferenceSession/<id>`` for a session token), ``iat``, ``exp`` and ``grants``
(``[{resources, functions, accounts, entities}]``, ``"*"`` a wildcard); a token made with
another token (a session token) also ``lineage``, the ids of the tokens that made it.

Every request sends ``Authorization: Bearer <token>``; :class:`Authenticator` turns it into a
:class:`~assay.server.access.Principal` or refuses it with 401 saying why (missing, malformed,
signed with another secret, expired, revoked — itself or any token in its lineage). Revoked
token ids are kept in ``<data_dir>/.assay/revoked-tokens.json`` (:class:`RevocationList`),
re-read whenever the file changes, so ``assay token revoke`` takes effect on a running server.
Verified tokens are cached, each until its own expiry at the latest. The rules:
``docs/design/server.md``, "Access control".
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pydantic

from assay import errors
from assay.core.tokens import TokenSigner
from assay.schema import ids
from assay.schema.base import LABEL_VALUE_PATTERN
from assay.schema.platform import AccessGrant, APIFunctions, Resources
from assay.server.access import Principal

__all__ = [
    "DEFAULT_TOKEN_DAYS",
    "Authenticator",
    "RevocationList",
    "account_grant",
    "issue_token",
    "parse_grant",
]

#: How long an API token lasts unless asked otherwise.
DEFAULT_TOKEN_DAYS = 30.0

_CACHE_SIZE = 4096


def account_grant(account: str) -> AccessGrant:
    """Everything on the entities of ``account``: the default grant of an account's token."""
    return AccessGrant(resources=[Resources.ALL], functions=[APIFunctions.all], accounts=[account])


def _check_account(account: str) -> str:
    import re

    if (
        not isinstance(account, str)
        or not re.match(LABEL_VALUE_PATTERN, account)
        or not (0 < len(account) <= 63)
    ):
        raise errors.ValidationError(
            f"account {account!r} is not a valid account name: use 1 to 63 letters, digits, '-', "
            "'_' or '.', starting and ending with a letter or digit",
            field="account",
            value=account,
        )
    return account


def issue_token(
    core_or_signer: Any,
    *,
    account: str,
    grants: Iterable[AccessGrant | Mapping[str, Any]] | None = None,
    expires: datetime | timedelta | float | None = None,
    id: str | None = None,
) -> str:
    """A signed API token for ``account``.

    ``core_or_signer`` is a :class:`~assay.core.platform.PlatformCore` or a
    :class:`~assay.core.tokens.TokenSigner`. ``grants`` default to everything on the
    account's own entities; ``expires`` is a timezone-aware datetime, a duration from now, or
    a number of days (default :data:`DEFAULT_TOKEN_DAYS`).

    >>> token = issue_token(signer, account="alice")                      # doctest: +SKIP
    >>> token = issue_token(signer, account="alice",                      # doctest: +SKIP
    ...     grants=[{"resources": ["datasets"], "functions": ["get", "query"],
    ...              "accounts": ["bob"]}])
    """
    signer: TokenSigner = getattr(core_or_signer, "signer", core_or_signer)
    if not isinstance(signer, TokenSigner):
        raise errors.ValidationError(
            "issue_token needs a PlatformCore or a TokenSigner, got "
            f"{type(core_or_signer).__name__}",
            field="core_or_signer",
        )
    _check_account(account)
    checked: list[AccessGrant] = []
    for i, grant in enumerate([account_grant(account)] if grants is None else list(grants)):
        try:
            checked.append(
                grant if isinstance(grant, AccessGrant) else AccessGrant.model_validate(grant)
            )
        except pydantic.ValidationError as exc:
            raise errors.ValidationError(
                f"grants[{i}] is not a valid access grant: {exc.errors()[0]['msg']}",
                field=f"grants[{i}]",
            ) from None
    now = time.time()
    if expires is None:
        until = now + DEFAULT_TOKEN_DAYS * 86400
    elif isinstance(expires, datetime):
        if expires.tzinfo is None:
            raise errors.ValidationError(
                "expires must be timezone-aware, e.g. datetime.now(timezone.utc) + "
                "timedelta(days=7)",
                field="expires",
            )
        until = expires.timestamp()
    elif isinstance(expires, timedelta):
        until = now + expires.total_seconds()
    else:
        until = now + float(expires) * 86400
    if until <= now:
        raise errors.ValidationError("the token would already be expired", field="expires")
    return signer.sign(
        subject=f"Account/{account}",
        grants=[g.model_dump(mode="json") for g in checked],
        expires=until,
        id=id,
    )


def parse_grant(spec: str, account: str) -> AccessGrant:
    """A grant from the command line's ``RESOURCES:FUNCTIONS[:TARGETS]``.

    ``RESOURCES`` and ``FUNCTIONS`` are comma-separated (``*`` for all); ``TARGETS`` is a
    comma-separated list of entity ids (32 hex digits) and account names (``*`` for every
    account), default ``account``. E.g. ``datasets,evaluations:get,query`` or
    ``inferencesessions:consume:0123...``.
    """
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(parts[:2]):
        raise errors.ValidationError(
            f"grant {spec!r} is not RESOURCES:FUNCTIONS[:TARGETS], e.g. 'datasets:get,query' "
            "or '*:*'",
            field="grant",
            value=spec,
        )
    targets = [t for t in parts[2].split(",") if t] if len(parts) == 3 else [account]
    entities = [t for t in targets if ids.is_entity_id(t)]
    accounts = [t for t in targets if not ids.is_entity_id(t)]
    for name in accounts:
        if name != "*":
            _check_account(name)
    body = {
        "resources": parts[0].split(","),
        "functions": parts[1].split(","),
        "accounts": accounts,
        "entities": entities,
    }
    try:
        return AccessGrant.model_validate(body)
    except pydantic.ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = str(error["loc"][0]) if error.get("loc") else "grant"
        valid = (
            ", ".join(r.value for r in Resources)
            if field == "resources"
            else ", ".join(f.value for f in APIFunctions)
        )
        raise errors.ValidationError(
            f"grant {spec!r}: {error.get('input')!r} is not one of the valid {field} ({valid})",
            field="grant",
            value=spec,
        ) from None


class RevocationList:
    """Ids of revoked tokens, in a JSON file (``{"revoked": {jti: expiry or null}}``).

    The file is re-read when it changes, so a revocation written by another process (``assay
    token revoke``) applies at once; entries whose token has expired anyway are dropped on
    the next write.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] | None = None
        self._revoked: dict[str, float | None] = {}

    @property
    def path(self) -> Path:
        return self._path

    def _read(self) -> dict[str, float | None]:
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise errors.PlatformError(
                f"the revoked-token list {str(self._path)!r} cannot be read ({exc}); fix or "
                "remove the file"
            ) from None
        revoked = data.get("revoked") if isinstance(data, dict) else None
        if not isinstance(revoked, dict):
            return {}
        return {
            str(k): (float(v) if isinstance(v, int | float) else None) for k, v in revoked.items()
        }

    def _refresh(self) -> None:
        # inode and ctime too: a rewrite of the same size within the file system's mtime
        # granularity (or with its mtime set back) is still a change
        try:
            st = os.stat(self._path)
            stamp: tuple[int, ...] | None = (
                st.st_ino,
                st.st_mtime_ns,
                st.st_ctime_ns,
                st.st_size,
            )
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            with self._lock:
                self._revoked = self._read() if stamp is not None else {}
                self._stamp = stamp

    def is_revoked(self, token_id: str) -> bool:
        """True if the token ``token_id`` was revoked."""
        self._refresh()
        return token_id in self._revoked

    def first_revoked(self, token_ids: Iterable[str]) -> str | None:
        """The first of ``token_ids`` that was revoked, if any (one check of the file)."""
        self._refresh()
        revoked = self._revoked
        return next((t for t in token_ids if t in revoked), None)

    def ids(self) -> list[str]:
        """The revoked token ids."""
        self._refresh()
        return sorted(self._revoked)

    def revoke(self, token_id: str, *, expires: float | None = None) -> None:
        """Revoke the token ``token_id`` (its ``jti``); ``expires`` (its ``exp``) lets the entry
        be dropped once the token has expired anyway."""
        if not isinstance(token_id, str) or not token_id.strip():
            raise errors.ValidationError("a token id to revoke is required", field="token_id")
        with self._lock:
            current = self._read()
            now = time.time()
            current = {k: v for k, v in current.items() if v is None or v > now}
            current[token_id] = expires
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"revoked": current}, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path)
            self._revoked = current
            self._stamp = None  # re-stat at the next check


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Principal`, or 401 saying why."""

    def __init__(self, signer: TokenSigner, revocations: RevocationList | None = None) -> None:
        self._signer = signer
        self._revocations = revocations
        self._cache: dict[str, Principal] = {}

    @property
    def revocations(self) -> RevocationList | None:
        return self._revocations

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller of a request with this ``Authorization`` header."""
        if not authorization:
            raise errors.AuthenticationError(
                "no credentials: send 'Authorization: Bearer <token>' (an operator makes "
                "tokens with 'assay token create')"
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise errors.AuthenticationError(
                f"unsupported credentials {scheme!r}: send 'Authorization: Bearer <token>'"
            )
        principal = self._cache.get(token)
        if principal is None:
            principal = self._verify(token)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[token] = principal
        elif principal.expires <= time.time():
            self._cache.pop(token, None)
            raise errors.AuthenticationError("the token has expired; ask for a new one")
        if self._revocations is not None:
            revoked = self._revocations.first_revoked((principal.token_id, *principal.lineage))
            if revoked == principal.token_id:
                raise errors.AuthenticationError(
                    f"the token {principal.token_id} was revoked; ask for a new one"
                )
            if revoked is not None:
                raise errors.AuthenticationError(
                    f"the token {principal.token_id} was made with the token {revoked}, which "
                    "was revoked; ask for a new one"
                )
        return principal

    def _verify(self, token: str) -> Principal:
        claims = self._signer.verify(token)
        try:
            grants = tuple(AccessGrant.model_validate(g) for g in claims.get("grants") or [])
        except pydantic.ValidationError:
            raise errors.AuthenticationError(
                "the token's grants are malformed; ask for a new token"
            ) from None
        subject, token_id = claims.get("sub"), claims.get("jti")
        if not isinstance(subject, str) or not isinstance(token_id, str):
            raise errors.AuthenticationError("the token has no subject or id; ask for a new one")
        lineage = claims.get("lineage", [])
        if not isinstance(lineage, list) or not all(isinstance(t, str) for t in lineage):
            raise errors.AuthenticationError(
                "the token's lineage is malformed; ask for a new token"
            )
        return Principal(
            subject=subject,
            token_id=token_id,
            grants=grants,
            expires=claims["exp"],
            lineage=tuple(lineage),
        )
