"""Work survives losing a node: a Ray worker node killed in the middle of an evaluation (its
raylet, agents and workers, all at once), and the head process (the platform that submitted
the work) killed by SIGKILL: the evaluation completes with every (index, replication)
exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tests.conftest import ACCOUNT, until
from tests.ray.cluster import RayCluster
from tests.ray.services import Where
from tests.ray.test_evaluations import dataset, exactly_once

from assay.local import LocalPlatform
from assay.schema.status import Status

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


class Answers:
    """The nodes that answered the parts of an evaluation written so far (each part read
    once: they are written whole, never changed)."""

    def __init__(self, root: Path, evaluation_id: str) -> None:
        self.directory = root / evaluation_id / "data"
        self.read: set[Path] = set()
        self.nodes: set[str] = set()

    def __call__(self) -> set[str]:
        for path in set(self.directory.glob("part-*.parquet")) - self.read:
            self.read.add(path)
            table = pq.read_table(path, columns=["responses"])
            for responses in table["responses"].to_pylist():
                self.nodes.update(item["text"] for item in responses)
        return self.nodes


def test_a_node_killed_mid_evaluation(cluster: RayCluster, tmp_path: Path) -> None:
    doomed = cluster.add_node()
    root = tmp_path / "platform"
    with LocalPlatform(
        root, account=ACCOUNT, executor="ray", ray_address=cluster.address
    ) as platform:
        victim = doomed.node_id()
        data = dataset(platform, tmp_path / "data", rows=300, parts=2)
        service = platform.inferenceservices.create_mock(Where, kwargs={"latency": 0.04})
        evaluation = platform.evaluations.create(
            {
                "account": ACCOUNT,
                "dataset": data,
                "inferenceSession": {"inferenceService": service.id},
                "client": {"batchSize": 5},
            }
        )
        # the doomed node has written a part of its shard, and is on with the next one
        answered = Answers(root, evaluation.id)
        until(lambda: victim in answered(), 120, "a part from the node")
        doomed.kill()
        done = platform.evaluations.wait(evaluation.id, timeout=240)
        assert done.status == Status.Complete, done.message
        exactly_once(platform, evaluation.id, 300)
        log = platform.evaluations.logs(evaluation.id)
        # what the lost node wrote is kept, and the rest was done by the others
        answers = answered()
    assert victim in answers and len(answers) >= 2, answers
    # a shard on the node ran again, or (the workflow's own task was there) the workflow
    assert "was lost" in log or "resumed" in log, log


HEAD = """
import sys
from pathlib import Path
sys.path[:0] = {paths!r}
from tests.conftest import ACCOUNT
from tests.ray.services import Where
from tests.ray.test_evaluations import dataset
from assay.local import LocalPlatform

root, address = Path(sys.argv[1]), sys.argv[2]
platform = LocalPlatform(root / "platform", account=ACCOUNT, executor="ray", ray_address=address)
data = dataset(platform, root / "data", rows=240, parts=2)
service = platform.inferenceservices.create_mock(Where, kwargs={{"latency": 0.04}})
evaluation = platform.evaluations.create({{
    "account": ACCOUNT, "dataset": data,
    "inferenceSession": {{"inferenceService": service.id}}, "client": {{"batchSize": 5}},
}})
print(evaluation.id, flush=True)
platform.evaluations.wait(evaluation.id, timeout=600)
"""


def test_a_killed_head_resumes(cluster: RayCluster, tmp_path: Path) -> None:
    script = tmp_path / "head.py"
    script.write_text(HEAD.format(paths=[str(REPO)]))
    head = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), cluster.address],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    try:
        assert head.stdout is not None
        evaluation_id = head.stdout.readline().strip()
        assert len(evaluation_id) == 32, evaluation_id
        root = tmp_path / "platform"
        until(Answers(root, evaluation_id), 120, "a part written")
        os.kill(head.pid, signal.SIGKILL)
        head.wait(timeout=30)
    finally:
        if head.poll() is None:
            head.kill()
            head.wait()
        if head.stdout is not None:
            head.stdout.close()
    # a new head on the same store resumes the work, as the server does at start-up
    with LocalPlatform(
        root, account=ACCOUNT, executor="ray", ray_address=cluster.address
    ) as platform:
        done = platform.evaluations.wait(evaluation_id, timeout=240)
        assert done.status == Status.Complete, done.message
        exactly_once(platform, evaluation_id, 240)
        assert "resumed" in platform.evaluations.logs(evaluation_id)


def test_the_head_script_is_valid_python() -> None:
    compile(textwrap.dedent(HEAD.format(paths=["/x"])), "head.py", "exec")
