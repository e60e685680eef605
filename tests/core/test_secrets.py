"""Secrets belong to accounts: a service resolves ``{"secret": name}`` in its own account only
(another account's name reads as a missing one), and the embedded platform keeps working as
before — its secrets serve every account its user writes, and a file written before accounts
existed is its account's."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from assay import errors
from assay.core.secrets import SecretStore
from assay.local import LocalPlatform
from assay.policy import Policy


def test_each_account_has_its_own_secrets(tmp_path: Path) -> None:
    store = SecretStore(tmp_path / "secrets.json")
    store.set("alice", "key", "alice-value")
    store.set("bob", "other", "bob-value")
    assert store.get("alice", "key") == "alice-value"
    assert store.names("alice") == ["key"] and store.names("bob") == ["other"]
    with pytest.raises(errors.NotFoundError) as other:
        store.get("bob", "key")
    with pytest.raises(errors.NotFoundError) as missing:
        store.get("bob", "nothing")
    assert str(other.value).replace("key", "X") == str(missing.value).replace("nothing", "X")
    assert "alice" not in str(other.value)
    assert not store.delete("bob", "key") and store.get("alice", "key") == "alice-value"
    mode = stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode)
    assert mode == 0o600
    with pytest.raises(errors.ValidationError, match="account"):
        store.set("", "key", "value")
    with pytest.raises(errors.ValidationError, match="secret name"):
        store.set("alice", "../key", "value")


def test_a_file_from_before_accounts_is_the_embedded_platform_s(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"old-key": "old-value"}))
    assert SecretStore(path, legacy_account="me").get("me", "old-key") == "old-value"
    server = SecretStore(path)  # a server has no account to give them to: nobody gets them
    assert server.names("me") == [] and server.names("") == []
    server.set("alice", "new", "v")  # ...but they are kept
    assert SecretStore(path, legacy_account="me").get("me", "old-key") == "old-value"


def test_embedded_secrets_serve_every_account_a_multi_user_core_does_not(
    tmp_path: Path,
) -> None:
    with LocalPlatform(tmp_path / "p", account="me") as platform:
        platform.secrets.set("key", "value")
        core = platform.core
        assert core.secret("me", "key") == "value"
        assert core.secret("another", "key") == "value"  # the embedded user's own
        core.policy = Policy(multi_user=True)
        with pytest.raises(errors.NotFoundError, match="account 'another' has no secret"):
            core.secret("another", "key")


def test_the_client_has_the_methods_of_the_local_secrets() -> None:
    import inspect

    from assay.client._secrets import Secrets
    from assay.core.secrets import AccountSecrets

    for name in ("set", "names", "delete"):
        local = list(inspect.signature(getattr(AccountSecrets, name)).parameters)
        remote = list(inspect.signature(getattr(Secrets, name)).parameters)
        assert remote[: len(local)] == local and remote[len(local) :] == ["account"], name
