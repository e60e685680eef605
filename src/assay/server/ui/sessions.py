"""Sign-in sessions of the web UI, kept on the server (``docs/design/ui.md``, "Sessions").

The browser holds only the cookie ``assay_session``: an opaque random id (32 bytes). The
session it names holds the API token the user signed in with, the session's CSRF token and
when it ends: at the token's expiry at the latest, and :data:`SESSION_SECONDS` after sign-in
otherwise. The token is verified again on every request (:func:`assay.server.ui.common.
page_principal`), so a revoked token ends its sessions at once. Sessions live in the server
process's memory: a restart signs everyone out, which is the safe direction.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

__all__ = ["SESSION_COOKIE", "SESSION_SECONDS", "SignInSession", "SignInSessions"]

#: The cookie that carries the session id.
SESSION_COOKIE = "assay_session"
#: The longest a sign-in lasts (a token that expires sooner ends it sooner).
SESSION_SECONDS = 12 * 3600.0
#: The most sessions kept at once; the oldest are dropped first when more sign in.
MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class SignInSession:
    """One signed-in browser."""

    id: str
    """The opaque id in the cookie."""
    token: str
    """The API token the user signed in with (never sent back to the browser)."""
    csrf: str
    """The token every POST form of this session must carry (``csrf_token`` field)."""
    expires: float
    """When the session ends (epoch seconds): never after the token's expiry."""


class SignInSessions:
    """The sessions of one app, in memory, safe to use from several threads."""

    def __init__(self, *, lifetime: float = SESSION_SECONDS, capacity: int = MAX_SESSIONS) -> None:
        self._lifetime = lifetime
        self._capacity = capacity
        self._sessions: dict[str, SignInSession] = {}
        self._lock = threading.Lock()

    def open(self, token: str, token_expires: float) -> SignInSession:
        """A new session for ``token``, ending at ``token_expires`` at the latest."""
        now = time.time()
        session = SignInSession(
            id=secrets.token_urlsafe(32),
            token=token,
            csrf=secrets.token_urlsafe(32),
            expires=min(now + self._lifetime, float(token_expires)),
        )
        with self._lock:
            if len(self._sessions) >= self._capacity:
                self._drop_expired(now)
            while len(self._sessions) >= self._capacity:  # oldest first (insertion order)
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> SignInSession | None:
        """The live session ``session_id`` names, or None (unknown or ended)."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires <= time.time():
            self.close(session_id)
            return None
        return session

    def close(self, session_id: str | None) -> None:
        """End the session (nothing happens for an unknown id)."""
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _drop_expired(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]
