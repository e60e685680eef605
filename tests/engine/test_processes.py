"""The ``processes`` executor: workflows in a pool of worker processes, surviving crashes of a
worker and of the platform's own process."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from tests.conftest import ACCOUNT, ready_dataset

from assay import errors
from assay.core.platform import CoreConfig, PlatformFactory
from assay.engine import ProcessExecutor
from assay.engine.processes import WORKER_CRASHED
from assay.local import LocalPlatform, mocks
from assay.schema.dataschema import DataSchema
from assay.schema.status import Status

REPO = Path(__file__).resolve().parents[2]

METRICS = """
import pyarrow as pa
import pyarrow.compute as pc


def lengths(args, *, evaluation):
    table = evaluation.to_table()
    text = pc.struct_field(pc.list_element(table["responses"], 0), "text")
    return pa.table({
        "_index_": table["_index_"],
        "_replication_": table["_replication_"],
        "length": pc.utf8_length(text).cast(pa.int64()),
    })
"""

DOOMED = """
import os
import signal

from assay.local.mocks import TextCompletion


class Doomed(TextCompletion):
    '''Kills the process that serves it on the first request.'''

    def infer(self, endpoint, request):
        os.kill(os.getpid(), signal.SIGKILL)

    def infer_batch(self, endpoint, requests):
        os.kill(os.getpid(), signal.SIGKILL)
"""

# An evaluation slow enough (a few seconds) to be caught in the middle: small batches, each
# answered after a delay, written in several parts.
SLOW = {"client": {"batchSize": 5}, "workersPerReplica": 2}


def _wait_for(condition: Callable[[], object], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not met within {timeout} s: {what or condition}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _evaluation(dataset: str, service: str, **fields: Any) -> dict[str, Any]:
    return {
        "account": ACCOUNT,
        "dataset": dataset,
        "inferenceSession": {"inferenceService": service},
        **fields,
    }


def _slow_service(platform: LocalPlatform, latency: float = 0.2) -> str:
    return platform.inferenceservices.create_mock(
        mocks.Faulty, account=ACCOUNT, kwargs={"latency": latency}
    ).id


def _assert_exactly_once(platform: LocalPlatform, evaluation_id: str, rows: int) -> None:
    pairs = platform.evaluations.open(evaluation_id).to_table(columns=["_index_", "_replication_"])
    assert pairs.num_rows == rows
    counts = pairs.group_by(["_index_", "_replication_"]).aggregate([([], "count_all")])
    assert counts.num_rows == rows and pc.max(counts["count_all"]).as_py() == 1


def _parts_written(root: Path, evaluation_id: str) -> int:
    return len(list((root / evaluation_id / "data").glob("*.parquet")))


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody has reaped yet counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:
        return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _executor(platform: LocalPlatform) -> ProcessExecutor:
    executor = platform.core.engine.executor
    assert isinstance(executor, ProcessExecutor)
    return executor


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[LocalPlatform]:
    with LocalPlatform(
        tmp_path / "platform", account=ACCOUNT, executor="processes", workers=2
    ) as platform:
        yield platform


# -- configuration ----------------------------------------------------------------------


def test_core_config_travels_as_json_and_pickle_and_hides_its_password(tmp_path: Path) -> None:
    config = CoreConfig(
        "postgresql+psycopg://auditor:hunter2@db/assay",
        tmp_path,
        secret_file=tmp_path / "secret.key",
        default_account="a",
        claim_ttl=5.0,
    )
    assert CoreConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert pickle.loads(pickle.dumps(config)) == config
    assert "hunter2" not in repr(config) and "auditor:***@db" in repr(config)
    with pytest.raises(errors.ValidationError, match="unknown CoreConfig fields"):
        CoreConfig.from_json({**config.to_json(), "colour": "red"})


def test_local_platform_describes_itself_with_a_core_config(tmp_path: Path) -> None:
    with LocalPlatform(tmp_path / "p", account=ACCOUNT) as platform:
        config = platform.config
        assert config.storage_root == platform.storage_root
        assert config.default_account == ACCOUNT
        assert platform.core.config is config
        model = platform.models.create(
            {
                "account": ACCOUNT,
                "name": "m",
                "artifact": {"kind": "Mock"},
                "source": {"kind": "Mock"},
                "resources": {"storage": "1Gi"},
            }
        )
    from assay.core.platform import PlatformCore

    core = PlatformCore.from_config(config)
    try:
        assert core.models.get(model.id).name == "m"
    finally:
        core.close()


def test_bad_executor_choices_are_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.ValidationError, match=r"unknown executor 'threads'.*'processes'"):
        LocalPlatform(tmp_path / "a", executor="threads")  # type: ignore[arg-type]
    with pytest.raises(errors.ValidationError, match="workers=2 applies to executor='processes'"):
        LocalPlatform(tmp_path / "b", workers=2)
    with pytest.raises(errors.ValidationError, match="at least 1"):
        ProcessExecutor(workers=0)
    with pytest.raises(errors.ValidationError, match="in-memory SQLite"):
        ProcessExecutor(PlatformFactory(CoreConfig("sqlite://", tmp_path)))


# -- running in the pool -------------------------------------------------------------------


def test_evaluation_and_measurement_run_in_the_pool(pool: LocalPlatform, tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "audit").mkdir(parents=True)
    (package / "audit" / "__init__.py").write_text("")
    (package / "audit" / "metrics.py").write_text(METRICS)
    module = pool.modules.upload_package(
        pool.modules.create_package(package, account=ACCOUNT, name="audit"), package
    )
    dataset = ready_dataset(pool, tmp_path / "data", rows=40)
    service = pool.inferenceservices.create_mock(
        mocks.TextCompletion, account=ACCOUNT, kwargs={"seed": 2}
    )
    evaluation = pool.evaluations.create(_evaluation(dataset, service.id, replications=2))
    # create() returns at once: the work is the pool's
    assert evaluation.status in (Status.Created, Status.Admitted)
    schema = pa.schema(
        [("_index_", pa.int64()), ("_replication_", pa.string()), ("length", pa.int64())]
    )
    method = pool.methods.create(
        {
            "account": ACCOUNT,
            "name": "lengths",
            "scope": "Evaluation",
            "implementation": {
                "kind": "PythonFunction",
                "pythonFunction": {"fullyQualifiedName": "audit.metrics.lengths"},
            },
            "inputs": [{"kind": "Evaluation", "keyword": "evaluation"}],
            "output": {
                "kind": "Measurement",
                "measurement": {
                    "name": "lengths",
                    "level": "Instance",
                    "schema": DataSchema.from_arrow(schema).model_dump(by_alias=True),
                },
            },
            "modules": [module.id],
        }
    )
    measurement = pool.measurements.create(
        {
            "account": ACCOUNT,
            "method": method.id,
            "scope": {"evaluation": evaluation.id},
            "inputs": [{"keyword": "evaluation", "entity": evaluation.id}],
        }
    )
    measurement = pool.measurements.wait(measurement.id, timeout=120)
    assert measurement.status == Status.Complete, measurement.message
    evaluation = pool.evaluations.get(evaluation.id)
    assert evaluation.status == Status.Complete, evaluation.message
    _assert_exactly_once(pool, evaluation.id, 80)
    assert pool.measurements.open(measurement.id).to_table().num_rows == 80
    assert _executor(pool).worker_pids()  # (the pool started workers, and keeps them)


def test_jobs_run_in_parallel_in_different_workers(pool: LocalPlatform, tmp_path: Path) -> None:
    # The evaluations wait for the dataset: the worker that ingests it schedules them all,
    # and hands them back to the pool rather than running them one after the other itself.
    dataset = ready_dataset(pool, tmp_path / "data", rows=100)
    service = _slow_service(pool)
    ids = [pool.evaluations.create(_evaluation(dataset, service, **SLOW)).id for _ in range(3)]
    executor = _executor(pool)
    seen: list[set[int]] = []

    def two_at_once() -> bool:
        seen.append({pid for id, pid in executor.running().items() if id in ids})
        return len(seen[-1]) == 2

    _wait_for(two_at_once, what="two evaluations running in two workers")
    # resume() leaves alone what the pool is running
    assert pool.resume() == []
    for id in ids:
        done = pool.evaluations.wait(id, timeout=120)
        assert done.status == Status.Complete, done.message
        _assert_exactly_once(pool, id, 100)
    assert all(len(pids) <= 2 for pids in seen)  # never more workers than asked for


def test_a_worker_killed_mid_job_is_replaced_and_the_job_runs_again(tmp_path: Path) -> None:
    with LocalPlatform(
        tmp_path / "platform", account=ACCOUNT, executor="processes", workers=1
    ) as platform:
        dataset = ready_dataset(platform, tmp_path / "data", rows=100)
        evaluation = platform.evaluations.create(
            _evaluation(dataset, _slow_service(platform), **SLOW)
        )
        executor = _executor(platform)
        _wait_for(
            lambda: _parts_written(platform.storage_root, evaluation.id) >= 1,
            what="a part written",
        )
        victim = executor.running()[evaluation.id]
        os.kill(victim, signal.SIGKILL)
        _wait_for(lambda: platform.evaluations.get(evaluation.id).reason == "Restarted")
        retried = platform.evaluations.get(evaluation.id)
        assert retried.message == (
            f"the worker process running Evaluation {evaluation.id} was killed by SIGKILL; "
            "running it again (attempt 2 of 3)"
        )
        done = platform.evaluations.wait(evaluation.id, timeout=120)
        assert done.status == Status.Complete, done.message
        _assert_exactly_once(platform, evaluation.id, 100)
        assert victim not in executor.worker_pids()
        assert executor.running() == {}


def test_a_workflow_that_kills_its_worker_every_time_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "doomed_mock.py").write_text(DOOMED)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))  # workers get the parent's sys.path
    doomed_mock = importlib.import_module("doomed_mock")

    executor = ProcessExecutor(workers=1, max_attempts=2)
    with LocalPlatform(tmp_path / "platform", account=ACCOUNT, executor=executor) as platform:
        dataset = ready_dataset(platform, tmp_path / "data", rows=10)
        service = platform.inferenceservices.create_mock(doomed_mock.Doomed, account=ACCOUNT)
        evaluation = platform.evaluations.create(_evaluation(dataset, service.id))
        done = platform.evaluations.wait(evaluation.id, timeout=120)
        assert (done.status, done.reason) == (Status.Failed, WORKER_CRASHED)
        assert done.message is not None
        assert done.message.startswith(
            f"the worker process running Evaluation {evaluation.id} was killed by SIGKILL "
            "(attempt 2 of 2), so it is not run again"
        )
        # the pool goes on with other work
        other = platform.evaluations.create(_evaluation(dataset, _slow_service(platform, 0)))
        assert platform.evaluations.wait(other.id, timeout=60).status == Status.Complete


def test_shutdown_without_waiting_kills_the_workers_and_resume_runs_the_work(
    tmp_path: Path,
) -> None:
    root = tmp_path / "platform"
    with LocalPlatform(root, account=ACCOUNT, executor="processes", workers=1) as platform:
        dataset = ready_dataset(platform, tmp_path / "data", rows=60)
        evaluation = platform.evaluations.create(
            _evaluation(dataset, _slow_service(platform), **SLOW)
        )
        executor = _executor(platform)
        _wait_for(lambda: evaluation.id in executor.running())
        pids = executor.worker_pids()
        executor.shutdown(wait=False)
        assert all(_gone(pid) for pid in pids)
        assert platform.evaluations.get(evaluation.id).status == Status.Admitted
    with LocalPlatform(root) as platform:  # inline: resume() returns when the work is done
        # (and the evaluation's own session, if it was killed while starting)
        assert evaluation.id in platform.resume()
        done = platform.evaluations.get(evaluation.id)
        assert done.status == Status.Complete, done.message
        _assert_exactly_once(platform, evaluation.id, 60)


# -- the platform's own process -------------------------------------------------------------


def _script(tmp_path: Path, name: str, code: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return path


@pytest.mark.slow
def test_parent_killed_mid_job_its_workers_exit_and_resume_completes_once(tmp_path: Path) -> None:
    root = tmp_path / "platform"
    script = _script(
        tmp_path,
        "audit.py",
        f"""
        import json, threading, time
        from pathlib import Path
        from assay.local import LocalPlatform, mocks
        from tests.conftest import ready_dataset

        p = LocalPlatform({str(root)!r}, account="tester", executor="processes", workers=1)
        dataset = ready_dataset(p, Path({str(tmp_path / "data")!r}), rows=100)
        service = p.inferenceservices.create_mock(
            mocks.Faulty, account="tester", kwargs={{"latency": 0.2}}
        )
        evaluation = p.evaluations.create({{
            "account": "tester", "dataset": dataset,
            "inferenceSession": {{"inferenceService": service.id}}, **{SLOW!r},
        }})
        executor = p.core.engine.executor
        while evaluation.id not in executor.running():
            time.sleep(0.01)
        print(json.dumps({{"evaluation": evaluation.id, "workers": executor.worker_pids()}}))
        print(flush=True)
        threading.Event().wait()
        """,
    )
    with open(tmp_path / "stderr.txt", "w") as stderr:
        child = subprocess.Popen(
            [sys.executable, str(script)],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, (tmp_path / "stderr.txt").read_text()
        started = json.loads(line)
        evaluation, workers = started["evaluation"], started["workers"]
        assert workers and child.pid not in workers
        _wait_for(lambda: _parts_written(root, evaluation) >= 1, what="a part written")
    finally:
        child.kill()
        child.communicate(timeout=30)
    _wait_for(lambda: all(_gone(pid) for pid in workers), timeout=20, what="workers exited")

    # opening a pool on the store resumes what the dead process left (and says so)
    with LocalPlatform(root, executor="processes", workers=1) as platform:
        assert platform.core.engine.orphans() == []  # in the pool's hands already
        assert platform.resume() == []
        done = platform.evaluations.wait(evaluation, timeout=120)
        assert done.status == Status.Complete, done.message
        _assert_exactly_once(platform, evaluation, 100)
        assert platform.resume() == []


def test_a_script_without_a_main_guard_can_use_the_pool(tmp_path: Path) -> None:
    root = tmp_path / "platform"
    runs = tmp_path / "runs.txt"
    script = _script(
        tmp_path,
        "unguarded.py",
        f"""
        from pathlib import Path
        from assay.local import LocalPlatform, mocks
        from tests.conftest import ready_dataset

        with open({str(runs)!r}, "a") as runs:  # every run of this file leaves a line
            runs.write("ran\\n")
        with LocalPlatform({str(root)!r}, account="tester", executor="processes") as p:
            dataset = ready_dataset(p, Path({str(tmp_path / "data")!r}), rows=20)
            service = p.inferenceservices.create_mock(mocks.TextCompletion, account="tester")
            evaluation = p.evaluations.create({{
                "account": "tester", "dataset": dataset,
                "inferenceSession": {{"inferenceService": service.id}},
            }})
            print(p.evaluations.wait(evaluation.id).status)
        """,
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Complete", done.stderr
    assert runs.read_text() == "ran\n"


# -- waiting for a worker ---------------------------------------------------------------------


GATED = """
import os
import time

from assay.local.mocks import TextCompletion


class Gated(TextCompletion):
    '''Answers once the file ``gate`` exists.'''

    def __init__(self, gate):
        super().__init__()
        self.gate = gate

    def infer(self, endpoint, request):
        while not os.path.exists(self.gate):
            time.sleep(0.01)
        return super().infer(endpoint, request)

    def infer_batch(self, endpoint, requests):
        return [self.infer(endpoint, request) for request in requests]
"""


def test_work_waiting_for_a_worker_says_so_until_one_takes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "gated_mock.py").write_text(GATED)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))  # workers get the parent's sys.path
    gated_mock = importlib.import_module("gated_mock")
    gate = tmp_path / "gate"
    with (
        LocalPlatform(
            tmp_path / "platform", account=ACCOUNT, executor="processes", workers=1
        ) as platform,
        contextlib.ExitStack() as opened,
    ):
        opened.callback(gate.touch)  # also when the test fails: close() waits for the work
        dataset = ready_dataset(platform, tmp_path / "data", rows=20)
        platform.datasets.wait(dataset, timeout=60)
        held = platform.inferenceservices.create_mock(
            gated_mock.Gated, account=ACCOUNT, kwargs={"gate": str(gate)}
        )
        first = platform.evaluations.create(_evaluation(dataset, held.id)).id
        _wait_for(lambda: first in _executor(platform).running(), what="the first one running")
        second = platform.evaluations.create(_evaluation(dataset, _slow_service(platform, 0))).id
        expected = (
            f"queued: 1 of 1 workers busy (running Evaluation {first}); it starts when one is free"
        )
        _wait_for(
            lambda: platform.evaluations.get(second).message == expected,
            what="the queued message",
        )
        with pytest.raises(errors.WaitTimeoutError) as waited:
            platform.evaluations.wait(second, timeout=0.01)
        assert str(waited.value) == (
            f"Evaluation {second} is still Admitted after 0.01 s: {expected}; all workers are "
            "busy: wait longer, give the platform more workers, or terminate what runs"
        )
        with pytest.raises(errors.WaitTimeoutError, match="it is running: wait longer, or "):
            platform.evaluations.wait(first, timeout=0.01)
        gate.touch()  # the first ends; the worker takes the second
        for evaluation in (first, second):
            done = platform.evaluations.wait(evaluation, timeout=120)
            assert done.status == Status.Complete, done.message
            assert not (done.message or "").startswith("queued:")
