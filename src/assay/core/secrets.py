"""Platform secrets: credentials that runners use (an ``http`` service's API key), kept out of
entities. Stored in one JSON file readable only by its owner (mode 0600)."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

from assay import errors

__all__ = ["SecretStore"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class SecretStore:
    """Named secret values in a 0600 JSON file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in data.items()}

    def _write(self, data: dict[str, str]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)

    def set(self, name: str, value: str) -> None:
        """Store (or replace) the secret ``name``."""
        if not _NAME.match(name):
            raise errors.ValidationError(
                f"secret name {name!r} is not valid: use letters, digits, '_', '.' or '-' (up to 128)",
                field="name",
                value=name,
            )
        if not isinstance(value, str) or not value:
            raise errors.ValidationError(
                f"secret {name!r}: the value must be a non-empty string", field="value"
            )
        with self._lock:
            data = self._read()
            data[name] = value
            self._write(data)

    def get(self, name: str) -> str:
        """The value of the secret ``name``; NotFoundError naming the known secrets if absent."""
        data = self._read()
        if name not in data:
            known = ", ".join(sorted(data)) or "none"
            raise errors.NotFoundError(
                f"there is no platform secret {name!r} (known secrets: {known}); set it with secrets.set(name, value)",
                kind="Secret",
                id=name,
            )
        return data[name]

    def delete(self, name: str) -> bool:
        with self._lock:
            data = self._read()
            found = data.pop(name, None) is not None
            if found:
                self._write(data)
            return found

    def names(self) -> list[str]:
        """The names of the stored secrets (never their values)."""
        return sorted(self._read())
