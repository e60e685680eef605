"""Fairness: one account's inference cannot stall another account's requests.

Inference calls block for as long as the service takes (a mock's latency, a replica process,
a service elsewhere), so the server runs them apart from everything else:

- **A pool of their own.** ``InferenceLimits.run`` runs a call in a worker thread under its
  own limiter (``threads`` tokens), never under anyio's default limiter (40 tokens), which
  serves the ``def`` routes: reads, creates, uploads. However many inference calls wait, a
  read finds a thread.
- **A limit per account.** An account may have ``per_account`` calls admitted at once
  (``ServerSettings.inference_per_account``, ``ASSAY_INFERENCE_PER_ACCOUNT``), running or
  waiting for a thread of the pool. One more waits on the event loop (no thread) up to
  :data:`SLOT_WAIT` seconds for one of them to end, then gets 429
  (:class:`~assay.errors.TooManyRequestsError`) with ``Retry-After``.
- **A pool larger than one account's share.** ``threads`` is at least
  :data:`SHARES` times ``per_account`` (and at least :data:`MIN_THREADS`): one account holds at
  most a quarter of the pool. When more accounts than that call at once, their calls queue
  for the pool first come, first served, and each account has at most ``per_account`` calls
  in that queue, so a call waits behind at most ``per_account`` calls of each other account.

The account of a call is the caller's account; a session token's calls count against the
account that owns the session (so that minting session tokens multiplies no one's share).
The limits hold per server process. See ``docs/design/server.md``, "Fairness".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from assay import errors
from assay.server.access import Principal
from assay.server.errors import ErrorDetail

__all__ = [
    "MIN_THREADS",
    "SHARES",
    "SLOT_WAIT",
    "TOO_MANY_CALLS",
    "InferenceLimits",
    "accountable",
]

T = TypeVar("T")

#: The fewest threads of the inference pool.
MIN_THREADS = 64
#: The pool has at least this many times one account's limit.
SHARES = 4
#: How long a call over its account's limit waits for a slot before it is refused (seconds).
SLOT_WAIT = 2.0
#: The ``Retry-After`` of a refused call (seconds).
RETRY_AFTER = 1.0

ACCOUNT_SUBJECT = "Account/"

#: The OpenAPI ``responses`` entry of the routes that run inference.
TOO_MANY_CALLS: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorDetail,
        "description": "The account has as many inference calls running as the server allows "
        "(`inference_per_account`); retry after `Retry-After` seconds.",
    }
}


def accountable(principal: Principal, owner: str | None = None) -> str:
    """The account whose share a call of ``principal`` uses: the token's account, or for a
    session token ``owner`` (the account of the session)."""
    if principal.subject.startswith(ACCOUNT_SUBJECT):
        return principal.subject.removeprefix(ACCOUNT_SUBJECT)
    return owner if owner is not None else principal.subject


class InferenceLimits:
    """The inference pool and the per-account limit of one server (see the module
    docstring). Use it from the server's event loop only."""

    def __init__(
        self, per_account: int | None, *, threads: int | None = None, wait: float = SLOT_WAIT
    ) -> None:
        if per_account is not None and per_account < 1:
            raise errors.ValidationError(
                f"inference_per_account must be at least 1 (or None: no limit), got "
                f"{per_account!r}",
                field="inference_per_account",
                value=per_account,
            )
        self.per_account = per_account
        self.threads = threads or max(MIN_THREADS, SHARES * (per_account or 0))
        """The threads of the inference pool."""
        self.wait = wait
        self._pool: anyio.CapacityLimiter | None = None
        self._slots: dict[str, anyio.Semaphore] = {}

    @asynccontextmanager
    async def slot(self, account: str) -> AsyncIterator[None]:
        """Hold one of ``account``'s slots: wait up to ``wait`` seconds for one, else raise
        :class:`~assay.errors.TooManyRequestsError`."""
        if self.per_account is None:
            yield
            return
        slots = self._slots.get(account)
        if slots is None:
            slots = self._slots[account] = anyio.Semaphore(self.per_account)
        acquired = False
        with anyio.move_on_after(self.wait):
            await slots.acquire()
            acquired = True
        if not acquired:
            self._forget(account, slots)
            raise errors.TooManyRequestsError(
                f"account {account!r} has {self.per_account} inference calls running, the "
                f"most one account may have at once on this server (inference_per_account="
                f"{self.per_account}, ASSAY_INFERENCE_PER_ACCOUNT); wait for them to end, "
                "make fewer calls at once, or ask the server's operator to raise the limit",
                retry_after=RETRY_AFTER,
            )
        try:
            yield
        finally:
            slots.release()
            self._forget(account, slots)

    async def run(self, call: Callable[[], T]) -> T:
        """``call()`` in a thread of the inference pool."""
        if self._pool is None:
            self._pool = anyio.CapacityLimiter(self.threads)
        return await anyio.to_thread.run_sync(call, limiter=self._pool)

    async def call(self, account: str, call: Callable[[], T]) -> T:
        """``call()`` in the inference pool, in one of ``account``'s slots."""
        async with self.slot(account):
            return await self.run(call)

    def _forget(self, account: str, slots: anyio.Semaphore) -> None:
        """Drop an account's slots once none is held or awaited (accounts come and go)."""
        if (
            slots.value == self.per_account
            and slots.statistics().tasks_waiting == 0
            and self._slots.get(account) is slots
        ):
            del self._slots[account]
