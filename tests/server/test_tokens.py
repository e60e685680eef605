"""The token rules that need no server: the Authenticator's cache never outlives a token's
expiry, a token is refused when a token of its lineage is revoked, and the revocation list sees
every change of its file (``docs/design/server.md``, "Tokens made with tokens")."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import until

from assay import errors
from assay.core.tokens import Minter, TokenSigner
from assay.local import LocalPlatform, mocks
from assay.server.auth import Authenticator, RevocationList, account_grant, issue_token

SECRET = b"0123456789abcdef0123456789abcdef"


def test_a_cached_token_is_refused_once_it_expires() -> None:
    signer = TokenSigner(SECRET)
    authenticator = Authenticator(signer)
    expires = int(time.time()) + 2
    token = signer.sign(subject="Account/bob", grants=[], expires=expires)
    header = f"Bearer {token}"
    assert authenticator.authenticate(header).expires == expires  # verified, now cached

    until(lambda: time.time() > expires, 10, "the token's expiry")
    with pytest.raises(errors.AuthenticationError, match="expired"):
        authenticator.authenticate(header)


def test_a_token_is_refused_when_its_minter_is_revoked(tmp_path: Path) -> None:
    signer = TokenSigner(SECRET)
    revocations = RevocationList(tmp_path / "revoked.json")
    authenticator = Authenticator(signer, revocations)
    grant = account_grant("alice").model_dump(mode="json")
    lineage = ["root-token", "minter-token"]
    token = signer.sign(
        subject="InferenceSession/x", grants=[grant], expires=time.time() + 60, lineage=lineage
    )
    principal = authenticator.authenticate(f"Bearer {token}")
    assert principal.lineage == tuple(lineage)
    assert principal.minter().child_lineage == [*lineage, principal.token_id]

    revocations.revoke("root-token")  # the first token of the chain
    with pytest.raises(errors.AuthenticationError, match="made with the token root-token"):
        authenticator.authenticate(f"Bearer {token}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _signed(claims: dict[str, Any]) -> str:
    """A token with any claims, signed with :data:`SECRET`."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(SECRET, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


@pytest.mark.parametrize("lineage", ["root-token", [1, 2], {"a": "b"}])
def test_a_malformed_lineage_is_refused(lineage: Any) -> None:
    """A lineage that is not a list of token ids cannot be checked for revocations."""
    claims = {"jti": "t", "sub": "Account/bob", "exp": int(time.time()) + 60, "grants": []}
    authenticator = Authenticator(TokenSigner(SECRET))
    assert authenticator.authenticate(f"Bearer {_signed(claims)}").lineage == ()
    with pytest.raises(errors.AuthenticationError, match="lineage is malformed"):
        authenticator.authenticate(f"Bearer {_signed({**claims, 'lineage': lineage})}")


def test_a_same_size_rewrite_with_its_mtime_set_back_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "revoked.json"
    path.write_text(json.dumps({"revoked": {"a" * 32: None}}))
    revocations = RevocationList(path)
    assert revocations.ids() == ["a" * 32]
    before = os.stat(path)

    replacement = tmp_path / "new.json"
    replacement.write_text(json.dumps({"revoked": {"b" * 32: None}}))  # the same size
    os.replace(replacement, path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_size == before.st_size
    assert revocations.is_revoked("b" * 32)
    assert not revocations.is_revoked("a" * 32)


def test_minter_limits_in_the_core(platform: LocalPlatform) -> None:
    """``inferencesessions.token`` with a minter: out-granting is refused, the default expiry
    is cut to the minter's, a later one is refused naming ``expires``."""
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account="alice")
    made = platform.inferencesessions.create({"account": "alice", "inferenceService": service.id})
    session = made.inferencesession.id
    sessions = platform.core.inferencesessions
    expires = int(time.time()) + 600
    minter = Minter("m" * 32, expires, (account_grant("alice"),), ("r" * 32,))
    claims = platform.core.signer.verify(sessions.token_minted(session, None, minter))
    assert claims["exp"] == expires and claims["lineage"] == ["r" * 32, "m" * 32]

    later = datetime.fromtimestamp(expires + 60, UTC)
    with pytest.raises(errors.ValidationError, match="is after the expiry") as refused:
        sessions.token_minted(session, later, minter)
    assert refused.value.field == "expires"

    outsider = Minter("o" * 32, expires, (account_grant("bob"),))
    with pytest.raises(errors.PermissionDeniedError, match="'consume'"):
        sessions.token_minted(session, None, outsider)


def test_issue_token_needs_no_minter() -> None:
    """Operator-made tokens (``assay token create``) carry no lineage."""
    signer = TokenSigner(SECRET)
    claims = signer.verify(issue_token(signer, account="alice"))
    assert "lineage" not in claims
