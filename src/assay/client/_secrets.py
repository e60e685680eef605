"""``Client.secrets``: the secrets of an account on the server (``/v0/secrets``), with the
methods of ``LocalPlatform.secrets``: ``set(name, value)``, ``names()``, ``delete(name)``.

A service uses the secrets of its own account (``{"credential": {"secret": name}}``); values
are sent, never read back. ``account`` defaults to the token's account.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from assay.client._client import Client

__all__ = ["Secrets"]


class Secrets:
    """The secrets of the token's account (or of ``account=``) on the server."""

    def __init__(self, client: Client) -> None:
        self._transport = client._transport

    @staticmethod
    def _params(account: str | None) -> list[tuple[str, str]]:
        return [("account", account)] if account is not None else []

    def set(self, name: str, value: str, *, account: str | None = None) -> None:
        """Store (or replace) the secret ``name``; the account's services use it with
        ``{"credential": {"secret": name}}``."""
        from assay import errors
        from assay.core.secrets import check_name  # here: importing the Client stays light

        check_name(name)
        if not isinstance(value, str) or not value:
            raise errors.ValidationError(
                f"secret {name!r}: the value must be a non-empty string", field="value"
            )
        self._transport.json(
            "PUT",
            f"/secrets/{quote(name, safe='')}",
            json={"value": value},
            params=self._params(account),
            kind="Secret",
            id=name,
        )

    def names(self, *, account: str | None = None) -> list[str]:
        """The names of the account's secrets (never their values)."""
        data = self._transport.json("GET", "/secrets", params=self._params(account))
        return [str(name) for name in data.get("names", [])]

    def delete(self, name: str, *, account: str | None = None) -> bool:
        """Forget the secret ``name``; whether it existed."""
        from assay import errors
        from assay.core.secrets import check_name

        check_name(name)
        try:
            self._transport.send(
                "DELETE",
                f"/secrets/{quote(name, safe='')}",
                params=self._params(account),
                kind="Secret",
                id=name,
            )
        except errors.NotFoundError:
            return False
        return True
