"""Work a process leaves behind: a Ctrl-C ends a script's evaluation cleanly, and a platform
opened where a killed process left work says so and resumes it (or says how)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.compute as pc
import pytest

from assay.engine.engine import orphans_text
from assay.local import LocalPlatform
from assay.schema.status import Reason, Status
from assay.store import EntityStore

REPO = Path(__file__).resolve().parents[2]

# The script of a user: a data set, a service, and an evaluation that runs inline (create()
# returns when it is done). SERVICE is filled in per test.
SCRIPT = """
from pathlib import Path
from assay.local import LocalPlatform, mocks
from tests.conftest import ready_dataset

here = Path({here!r})
platform = LocalPlatform(here / "platform", account="tester")
dataset = ready_dataset(platform, here / "data", rows={rows})
{service}
print("creating", flush=True)
evaluation = platform.evaluations.create({{
    "account": "tester", "dataset": dataset,
    "inferenceSession": {{"inferenceService": service.id}},
    "client": {{"batchSize": 5}}, "workersPerReplica": 2,
}})
print("done", evaluation.status, flush=True)
"""

# A mock in the platform's process, 0.1 s per batch.
IN_PROCESS = """
service = platform.inferenceservices.create_mock(
    mocks.Faulty, account="tester", kwargs={"latency": 0.1}
)
"""

# mocks.Slow served by a replica process of the python runner.
REPLICA = """
(here / "pkg").mkdir()
(here / "pkg" / "served.py").write_text("from assay.local.mocks import Slow\\n")
module = platform.modules.upload_package(
    platform.modules.create_package(here / "pkg", account="tester", name="served"), here / "pkg"
)
service = platform.inferenceservices.create({
    "account": "tester", "name": "slow",
    "runner": {"kind": "python", "configuration": {
        "module": module.id, "target": "served:Slow", "kwargs": {"latency": 0.02}}},
    "interface": mocks.TextCompletion().interface.model_dump(by_alias=True),
})
"""


def _wait_for(condition: Callable[[], object], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not met within {timeout} s: {what or condition}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _start(here: Path, service: str, rows: int) -> subprocess.Popen[str]:
    here.mkdir(parents=True, exist_ok=True)
    script = here / "audit.py"
    code = SCRIPT.format(here=str(here), rows=rows, service=textwrap.dedent(service))
    script.write_text(code)
    return subprocess.Popen(
        [sys.executable, str(script)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _running_evaluation(here: Path, child: subprocess.Popen[str]) -> str:
    """Wait until the script's evaluation has written a part; its id."""
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line == "creating\n", (line, child.stderr.read() if child.stderr else "")
    store = EntityStore.sqlite(here / "platform" / "assay.db")
    try:

        def admitted_with_a_part() -> str | None:
            for doc in store.query(kind="Evaluation", status=Status.Admitted):
                if list((here / "platform" / doc["id"] / "data").glob("*.parquet")):
                    return str(doc["id"])
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            return None

        _wait_for(admitted_with_a_part, what="a part of the evaluation written")
        found = admitted_with_a_part()
        assert found is not None
        return found
    finally:
        store.close()


def _processes_under(path: Path) -> list[str]:
    """The command lines of the live processes that name ``path`` (replicas, workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if str(path) in cmdline and state != "Z":
            found.append(cmdline)
    return found


def _assert_exactly_once(platform: LocalPlatform, evaluation_id: str, rows: int) -> None:
    pairs = platform.evaluations.open(evaluation_id).to_table(columns=["_index_", "_replication_"])
    counts = pairs.group_by(["_index_", "_replication_"]).aggregate([([], "count_all")])
    assert pairs.num_rows == counts.num_rows == rows
    assert pc.max(counts["count_all"]).as_py() == 1


# -- Ctrl-C --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="looks for leftover processes in /proc")
def test_ctrl_c_ends_the_evaluation_and_the_process_cleanly(tmp_path: Path) -> None:
    here = tmp_path / "ctrl-c"
    child = _start(here, REPLICA, rows=400)
    try:
        evaluation = _running_evaluation(here, child)
        assert _processes_under(here), "the replica process should be running"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)  # no thread holds the exit up
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    # As Python ends on an uncaught Ctrl-C: killed by SIGINT, after a short traceback that
    # starts at the user's line and ends in the engine, and nothing else.
    assert child.returncode == -signal.SIGINT, err
    assert "done" not in out
    assert err.startswith("Traceback (most recent call last):\n"), err
    assert err.endswith("\nKeyboardInterrupt\n"), err
    assert err.count("Traceback") == 1 and 'audit.py", line' in err, err
    assert "assay/evaluation" not in err and "During handling" not in err, err
    assert len(err.splitlines()) < 20, err
    assert "Exception ignored" not in err and "Error in atexit" not in err, err
    assert _processes_under(here) == []  # the replica stopped with it

    with LocalPlatform(here / "platform") as platform:
        done = platform.evaluations.get(evaluation)
        assert (done.status, done.reason) == (Status.Terminated, Reason.Interrupted)
        assert (done.message or "").startswith(
            "interrupted (Ctrl-C) while running; what it wrote so far is kept in "
            f"{platform.entity_path(evaluation)}; create the Evaluation again"
        )
        assert platform.core.store.claim_owner(evaluation) is None
        assert platform.core.engine.orphans() == []
        sessions = platform.inferencesessions.query()
        assert sessions and all(s.status == Status.Terminated for s in sessions)


POOL = """
from pathlib import Path
from assay.local import LocalPlatform, mocks
from tests.conftest import ready_dataset

here = Path({here!r})
with LocalPlatform(here / "platform", account="tester", executor="processes", workers=1) as p:
    dataset = ready_dataset(p, here / "data", rows=1000)  # ~10 s of work
    service = p.inferenceservices.create_mock(
        mocks.Faulty, account="tester", kwargs={{"latency": 0.1}}
    )
    evaluation = p.evaluations.create({{
        "account": "tester", "dataset": dataset,
        "inferenceSession": {{"inferenceService": service.id}},
        "client": {{"batchSize": 5}}, "workersPerReplica": 2,
    }})
    print("creating", flush=True)
    p.evaluations.wait(evaluation.id)
    print("done", flush=True)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="looks for leftover processes in /proc")
def test_ctrl_c_stops_the_pool_at_once_and_ends_its_work(tmp_path: Path) -> None:
    here = tmp_path / "pool"
    here.mkdir()
    (here / "audit.py").write_text(POOL.format(here=str(here)))
    child = subprocess.Popen(
        [sys.executable, str(here / "audit.py")],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        evaluation = _running_evaluation(here, child)
        workers = [c for c in _processes_under(here) if "worker_main" in c]  # (sys.path)
        child.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert time.monotonic() - started < 30
    assert child.returncode == -signal.SIGINT, err
    assert err.endswith("\nKeyboardInterrupt\n") and "Exception ignored" not in err, err
    assert workers and not [c for c in _processes_under(here) if "worker_main" in c]
    with LocalPlatform(here / "platform") as platform:
        done = platform.evaluations.get(evaluation)
        assert (done.status, done.reason) == (Status.Terminated, Reason.Interrupted)
        assert platform.core.engine.orphans() == []


# -- reopening -------------------------------------------------------------------------------


def test_orphans_text_names_the_work_and_its_progress() -> None:
    one = {"id": "a" * 32, "kind": "Evaluation", "message": "41 / 60 instances, 2.0/s, ETA 9 s"}
    assert (
        orphans_text([one])
        == f"1 interrupted Evaluation {'a' * 32} (41 / 60 instances when it stopped)"
    )
    other = {"id": "b" * 32, "kind": "Measurement"}
    assert orphans_text([one, other]) == (
        f"2 interrupted workflows Evaluation {'a' * 32} (41 / 60 instances when it stopped), "
        f"Measurement {'b' * 32}"
    )
    many = [{"id": f"{i:032x}", "kind": "Evaluation"} for i in range(7)]
    assert orphans_text(many).endswith(f"{4:032x} and 2 more")
    assert orphans_text(many).startswith("7 interrupted Evaluations ")


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A platform whose script was killed (SIGKILL) in the middle of an inline evaluation:
    its directory, and the evaluation's id."""
    here = tmp_path_factory.mktemp("killed")
    child = _start(here, IN_PROCESS, rows=100)
    try:
        evaluation = _running_evaluation(here, child)
    finally:
        child.kill()
        child.communicate(timeout=30)
    return here / "platform", evaluation


def _copy(killed: tuple[Path, str], to: Path) -> tuple[Path, str]:
    shutil.copytree(killed[0], to)
    return to, killed[1]


@pytest.mark.slow
def test_reopening_inline_says_what_was_interrupted_and_resume_continues_it(
    killed: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    root, evaluation = _copy(killed, tmp_path / "platform")
    with caplog.at_level(logging.WARNING, logger="assay.local"), LocalPlatform(root) as platform:
        # the constructor does not run the work (that would block it): it says how to
        line = capsys.readouterr().err
        assert line.startswith(f"assay: 1 interrupted Evaluation {evaluation} ("), line
        assert line.endswith(
            "left unfinished by a process that stopped; call platform.resume() to continue it\n"
        ), line
        assert [r.getMessage() for r in caplog.records] == [line.removeprefix("assay: ").strip()]
        assert platform.evaluations.get(evaluation).status == Status.Admitted
        assert platform.core.engine.orphans()[0]["id"] == evaluation

        assert platform.resume() == [evaluation]  # inline: returns when it is done
        done = platform.evaluations.get(evaluation)
        assert done.status == Status.Complete, done.message
        _assert_exactly_once(platform, evaluation, 100)
    with LocalPlatform(root):
        assert capsys.readouterr().err == ""  # nothing left to say


@pytest.mark.slow
def test_reopening_with_the_processes_executor_resumes_at_once(
    killed: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, evaluation = _copy(killed, tmp_path / "platform")
    with LocalPlatform(root, executor="processes", workers=1) as platform:
        line = capsys.readouterr().err
        assert line.startswith(f"assay: resuming 1 interrupted Evaluation {evaluation}"), line
        assert line.endswith("...\n"), line
        assert platform.resume() == []  # already in the pool's hands
        done = platform.evaluations.wait(evaluation, timeout=120)
        assert done.status == Status.Complete, done.message
        _assert_exactly_once(platform, evaluation, 100)


def test_a_platform_with_nothing_interrupted_says_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with LocalPlatform(tmp_path / "p"):
        pass
    with LocalPlatform(tmp_path / "p"):
        pass
    assert capsys.readouterr().err == ""
