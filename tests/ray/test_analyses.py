"""An analysis run as a Ray task keeps the sandbox of the multi-user server: the same code
path as with the ``processes`` executor, inside the Ray worker (compare
``tests/security/test_confine.py``)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from tests.conftest import until
from tests.postgres import in_ci
from tests.ray.cluster import RayCluster
from tests.ray.services import CANARY
from tests.security.test_sandbox import _measure, _module

from assay.engine.ray_executor import RayExecutor
from assay.local import LocalPlatform
from assay.schema.status import Status, is_status_terminal

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("bwrap") is None and not in_ci(), reason="bubblewrap is not installed"
    ),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux namespaces"),
]

METHOD = """
import json, os, socket
import pyarrow as pa


def _try(action):
    try:
        return "ALLOWED: " + repr(action())[:200]
    except BaseException as exc:
        return "denied: " + type(exc).__name__


def where(args, **inputs):
    facts = {{
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "uid": os.getuid(),
        "canary": os.environ.get({canary!r}),
        "data": _try(lambda: os.listdir({data!r})),
        "database": _try(lambda: open({database!r}, "rb").read(16)),
    }}
    print("WHERE " + json.dumps(facts), flush=True)
    return pa.table({{"x": [1]}})
"""


def test_an_analysis_runs_sandboxed_on_a_ray_worker(cluster: RayCluster, tmp_path: Path) -> None:
    root = tmp_path / "platform"
    source = METHOD.format(canary=CANARY, data=str(root), database=str(root / "assay.db"))
    with LocalPlatform(
        root, account="a", executor="ray", ray_address=cluster.address, sandbox=True
    ) as platform:
        executor = platform.core.engine.executor
        assert isinstance(executor, RayExecutor)
        module = _module(platform, "a", tmp_path, "where", source)  # type: ignore[arg-type]
        # _measure waits for the Measurement; meanwhile, see the executor hand it to Ray
        held: list[str] = []

        def watch() -> bool:
            held.extend(executor.running())
            docs = platform.core.store.query(kind="Measurement")
            return bool(docs) and is_status_terminal(docs[0].get("status"))

        import threading

        measured: list[object] = []
        thread = threading.Thread(
            target=lambda: measured.append(_measure(platform, "a", module, "where.where")),  # type: ignore[arg-type]
            daemon=True,
        )
        thread.start()
        until(watch, 180, "the measurement ended")
        thread.join(60)
        measurement = measured[0]
        assert measurement.status == Status.Complete, measurement.message  # type: ignore[attr-defined]
        assert measurement.id in held  # type: ignore[attr-defined]
        line = next(
            line
            for line in platform.measurements.logs(measurement.id).splitlines()  # type: ignore[attr-defined]
            if "WHERE " in line
        )
    where = json.loads(line.partition("WHERE ")[2])
    assert where["host"] == "sandbox" and where["uid"] == 65534, where
    assert where["canary"] is None, where  # the Ray worker's environment stays outside
    # the data directory shows only what the job was given (its Module, its output folder)
    assert "assay.db" not in where["data"] and ".assay" not in where["data"], where
    assert where["database"].startswith("denied"), where
