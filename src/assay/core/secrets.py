"""Secrets: credentials that runners use (an ``http`` service's API key), kept out of entities,
each owned by one account. A service's ``{"secret": name}`` is looked up in the service's own
account only, so one account can never make its service send another account's credential
(``docs/design/security.md``).

Stored in one JSON file readable only by its owner (mode 0600):
``{"version": 2, "accounts": {account: {name: value}}}``. A file written before secrets had
accounts (one flat ``{name: value}`` object) is read as the secrets of ``legacy_account``
(the embedded platform's account), or kept unreachable when there is none (a server).
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any

from assay import errors

__all__ = ["AccountSecrets", "SecretStore"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: The version of the file's layout (a flat ``{name: value}`` object had none).
VERSION = 2
#: Where a flat file's secrets go when the store has no ``legacy_account``: no account has
#: this name, so nothing resolves them, but they are kept.
_UNCLAIMED = ""


def check_name(name: Any) -> str:
    """``name`` if it is a valid secret name; ValidationError saying what is valid otherwise."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise errors.ValidationError(
            f"secret name {name!r} is not valid: use letters, digits, '_', '.' or '-' (up to "
            "128), starting with a letter or digit",
            field="name",
            value=name,
        )
    return name


class SecretStore:
    """Named secret values of every account, in a 0600 JSON file."""

    def __init__(self, path: Path, *, legacy_account: str | None = None) -> None:
        self._path = path
        self._legacy_account = legacy_account
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return {}
        if data.get("version") == VERSION and isinstance(data.get("accounts"), dict):
            accounts = {
                str(account): {str(k): str(v) for k, v in names.items()}
                for account, names in data["accounts"].items()
            }
            unclaimed = accounts.pop(_UNCLAIMED, None)
            if unclaimed and self._legacy_account is None:
                accounts[_UNCLAIMED] = unclaimed  # kept for the embedded platform
            elif unclaimed and self._legacy_account is not None:
                accounts[self._legacy_account] = {
                    **unclaimed,
                    **accounts.get(self._legacy_account, {}),
                }
            return accounts
        # a flat file of the embedded platform, written before secrets had accounts (its
        # values are strings, so it never holds the integer version)
        flat = {str(k): str(v) for k, v in data.items()}
        return {self._legacy_account or _UNCLAIMED: flat} if flat else {}

    def _write(self, data: dict[str, dict[str, str]]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": VERSION, "accounts": data}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)

    def set(self, account: str, name: str, value: str) -> None:
        """Store (or replace) the secret ``name`` of ``account``."""
        _check_account(account)
        check_name(name)
        if not isinstance(value, str) or not value:
            raise errors.ValidationError(
                f"secret {name!r}: the value must be a non-empty string", field="value"
            )
        with self._lock:
            data = self._read()
            data.setdefault(account, {})[name] = value
            self._write(data)

    def get(self, account: str, name: str) -> str:
        """The value of the secret ``name`` of ``account``. NotFoundError if that account has
        none of that name — the same error whether or not another account has one."""
        value = self._read().get(account, {}).get(name) if account else None
        if value is None:
            raise errors.NotFoundError(
                f"account {account!r} has no secret {name!r}; set it with 'assay secrets set "
                f"{name}' (the value is read from standard input), Client.secrets.set(name, "
                "value) or LocalPlatform.secrets.set(name, value)",
                kind="Secret",
                id=name,
            )
        return value

    def delete(self, account: str, name: str) -> bool:
        """Forget the secret ``name`` of ``account``; whether it existed."""
        with self._lock:
            data = self._read()
            found = data.get(account, {}).pop(name, None) is not None if account else False
            if found:
                if not data[account]:
                    del data[account]
                self._write(data)
            return found

    def names(self, account: str) -> list[str]:
        """The names of the secrets of ``account`` (never their values)."""
        return sorted(self._read().get(account, {})) if account else []

    def account(self, account: str) -> AccountSecrets:
        """The secrets of one account."""
        _check_account(account)
        return AccountSecrets(self, account)


class AccountSecrets:
    """The secrets of one account: ``set(name, value)``, ``names()``, ``delete(name)``."""

    def __init__(self, store: SecretStore, account: str) -> None:
        self._store = store
        self._account = account

    @property
    def account(self) -> str:
        """The account whose secrets these are."""
        return self._account

    def set(self, name: str, value: str) -> None:
        """Store (or replace) the secret ``name``; a service of this account uses it with
        ``{"credential": {"secret": name}}``."""
        self._store.set(self._account, name, value)

    def get(self, name: str) -> str:
        """The value of the secret ``name`` (NotFoundError if there is none)."""
        return self._store.get(self._account, name)

    def delete(self, name: str) -> bool:
        """Forget the secret ``name``; whether it existed."""
        return self._store.delete(self._account, name)

    def names(self) -> list[str]:
        """The names of the secrets (never their values)."""
        return self._store.names(self._account)


def _check_account(account: Any) -> None:
    if not isinstance(account, str) or not account:
        raise errors.ValidationError(
            f"secrets belong to an account: expected an account name, got {account!r}",
            field="account",
            value=account,
        )
