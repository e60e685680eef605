"""A mock service for the Ray tests: it answers with the Ray node that called it, so a test
can see which node answered each instance (imported by name in the Ray workers, which get
the test process's ``sys.path``)."""

from __future__ import annotations

from typing import Any

from assay.local.mocks import Slow

#: An environment variable of the test cluster's nodes (so of every Ray worker, and of no
#: other process): a sandboxed analysis must not see it.
CANARY = "ASSAY_TEST_RAY_CANARY"


def node_id() -> str:
    """The Ray node whose worker this process is; ``local`` outside the test cluster's
    workers (which alone have the nodes' environment: ``CANARY``)."""
    import os
    import sys

    if CANARY not in os.environ or "ray" not in sys.modules:
        return "local"
    import ray

    return str(ray.get_runtime_context().get_node_id())


class Where(Slow):
    """Answers ``{"text": <node id>}`` after ``latency`` seconds, one call at a time."""

    def infer(self, endpoint: str, request: dict[str, Any]) -> list[dict[str, Any]]:
        super().infer(endpoint, request)
        return [{"text": node_id()}]
