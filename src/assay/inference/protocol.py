"""The contracts between Assay and the systems it runs.

**In-process services.** A mock (``assay.local.mocks``) or a user's own model class served by
the ``python`` runner implements :class:`ServiceProtocol`: ``infer(endpoint, request)`` returns
the list of JSON objects the service answers with. A class may also implement
``infer_batch(endpoint, requests)`` (one list per request, in order); otherwise batches are
answered one request at a time.

**Replica HTTP protocol** (Assay's own replica processes, see ``replica_server.py``):

- ``GET /ready`` → ``200 {"ready": true}`` once the service is loaded, ``503`` before;
- ``POST /infer/{endpoint}`` with one JSON object → ``200`` and the JSON array of outputs;
- ``POST /batch/{endpoint}`` with a JSON array of objects → ``200`` and a JSON array with one
  array of outputs per input, in order;
- an unknown endpoint → ``404 {"detail": "... the endpoints are ..."}``; a request the service
  rejects (it raised ``ValueError``/``KeyError``/``TypeError``) → ``400 {"detail": ...}``; any
  other failure → ``500 {"detail": ...}``;
- every request must carry ``Authorization: Bearer <replica secret>`` (the secret is given to
  the replica at start in the ``ASSAY_REPLICA_SECRET`` environment variable) → ``401`` without.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = [
    "BATCH_PATH",
    "INFER_PATH",
    "READY_PATH",
    "REPLICA_SECRET_ENV",
    "ServiceProtocol",
    "endpoints_of",
]

READY_PATH = "/ready"
INFER_PATH = "/infer/"
BATCH_PATH = "/batch/"
REPLICA_SECRET_ENV = "ASSAY_REPLICA_SECRET"

JSONObject = dict[str, Any]


@runtime_checkable
class ServiceProtocol(Protocol):
    """What an in-process service (a mock, or a class served by the ``python`` runner)
    implements."""

    def infer(self, endpoint: str, request: JSONObject) -> list[JSONObject]:
        """Answer one request on ``endpoint`` with a list of JSON objects."""
        ...


def endpoints_of(service: Any) -> list[str]:
    """The endpoints a service declares: its ``endpoints`` attribute, else the endpoint of its
    ``interface``, else none known."""
    declared = getattr(service, "endpoints", None)
    if declared:
        return list(declared)
    interface = getattr(service, "interface", None)
    endpoint = getattr(interface, "endpoint", None)
    return [endpoint] if endpoint else []
