"""Evaluations against services as they are in the real world, with default settings: slow
(one answer at a time), batching slowly, rate-limited (429), dying, stopped half-way.

Time bounds here are loose (several times the ideal): exact ratios are in
``bench/bench_real_services.py``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from tests.conftest import ACCOUNT, ready_dataset, until

from assay import errors
from assay.inference.fake_openai import FakeOpenAIServer
from assay.inference.runners.openai import openai_interface
from assay.local import LocalPlatform, mocks
from assay.schema.requests import InferenceSessionCreateRequest
from assay.schema.status import Reason, Status

MODELS = """
import os
import time
from assay.local.mocks import Faulty, Slow, TextCompletion


class OneAtATime(Slow):
    '''An LLM on one GPU: one answer at a time, no infer_batch.'''

    def __init__(self, latency=0.2):
        super().__init__(TextCompletion(seed=1), latency=latency)


class SlowBatches:
    '''infer_batch that costs 50 ms per instance: a batch of 32 outlasts a 1 s timeout.'''

    def __init__(self):
        self.service = TextCompletion(seed=1)
        self.endpoints = self.service.endpoints

    def infer(self, endpoint, request):
        return self.infer_batch(endpoint, [request])[0]

    def infer_batch(self, endpoint, requests):
        time.sleep(0.05 * len(requests))
        return [self.service.infer(endpoint, r) for r in requests]


class Dies(Faulty):
    '''Exits with code 3 on its 4th call.'''

    def __init__(self):
        super().__init__(TextCompletion(seed=1), latency=0.02, exit_after=4, exit_code=3)


class OneDies(Slow):
    '''The first replica to answer 3 calls exits (code 5); the others live.'''

    def __init__(self, marker):
        super().__init__(TextCompletion(seed=1), latency=0.05)
        self.marker = marker

    def infer(self, endpoint, request):
        if self.calls == 3:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                print("about to die", flush=True)
                os._exit(5)
        return super().infer(endpoint, request)
"""


@pytest.fixture
def models(platform: LocalPlatform, tmp_path: Path) -> str:
    package = tmp_path / "realpkg"
    (package / "realmodels").mkdir(parents=True)
    (package / "realmodels" / "__init__.py").write_text(MODELS)
    module = platform.modules.create_package(package, account=ACCOUNT, name="realmodels")
    return platform.modules.upload_package(module, package).id


def _service(platform: LocalPlatform, module: str, target: str, **kwargs: Any) -> str:
    interface = mocks.TextCompletion().interface.model_dump(by_alias=True)
    configuration = {"module": module, "target": f"realmodels:{target}", "kwargs": kwargs}
    runner = {"kind": "python", "configuration": configuration}
    request = {"account": ACCOUNT, "name": target, "runner": runner, "interface": interface}
    return platform.inferenceservices.create(request).id


def _evaluate(platform: LocalPlatform, dataset: str, service: str, **fields: Any) -> Any:
    session = {"inferenceService": service, "replicas": fields.pop("replicas", 1)}
    return platform.evaluations.create(
        {"account": ACCOUNT, "dataset": dataset, "inferenceSession": session, **fields}
    )


def _in_background(
    platform: LocalPlatform, request: dict[str, Any]
) -> tuple[str, threading.Thread]:
    """Create an evaluation (inline: blocking) in a thread; its id once it is Admitted."""
    thread = threading.Thread(target=platform.evaluations.create, args=(request,), daemon=True)
    thread.start()
    found = until(
        lambda: platform.evaluations.query(dataset=request["dataset"]), 30, "no evaluation"
    )
    return found[0].id, thread


def test_a_one_at_a_time_service_is_sent_single_instances_and_never_times_out(
    platform: LocalPlatform, models: str, tmp_path: Path
) -> None:
    """The issue's first case, smaller: no infer_batch, 2 replicas, default settings. Before,
    a request carried 32 instances, outlasted the timeout and was retried forever."""
    dataset = ready_dataset(platform, tmp_path / "data", rows=24)
    service = _service(platform, models, "OneAtATime", latency=0.25)
    started = time.monotonic()
    evaluation = _evaluate(
        platform, dataset, service, replicas=2, client={"requestTimeoutSeconds": 2}
    )
    took = time.monotonic() - started
    assert evaluation.status == Status.Complete, evaluation.message
    table = platform.evaluations.open(evaluation.id).to_table()
    assert table.num_rows == 24
    assert set(table.column("_attempts_").to_pylist()) == {1}  # nothing retried
    latencies = table.column("_latency_").to_pylist()
    assert all(0.2 <= x < 2 for x in latencies), latencies
    assert took < 3 * (24 * 0.25 / 2) + 15  # ideal 3 s (plus starting two replicas)
    log = platform.evaluations.logs(evaluation.id)
    assert "1 instance(s) per request" in log
    assert "in " in (evaluation.message or "")  # "24 / 24 instances in 3.1 s"


def test_a_batch_that_outlasts_the_request_timeout_is_cut(
    platform: LocalPlatform, models: str, tmp_path: Path
) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=120)
    service = _service(platform, models, "SlowBatches")
    evaluation = _evaluate(platform, dataset, service, client={"requestTimeoutSeconds": 1})
    assert evaluation.status == Status.Complete, evaluation.message
    table = platform.evaluations.open(evaluation.id).to_table()
    assert table.num_rows == 120
    assert pc.max(table.column("_attempts_")).as_py() <= 2  # the batch that timed out, once
    log = platform.evaluations.logs(evaluation.id)
    assert "per request from now on" in log


def test_a_replica_that_exits_fails_the_evaluation_fast_with_its_exit_code(
    platform: LocalPlatform, models: str, tmp_path: Path
) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=200)
    service = _service(platform, models, "Dies")
    started = time.monotonic()
    evaluation = _evaluate(platform, dataset, service)
    assert time.monotonic() - started < 60
    assert evaluation.status == Status.Failed
    assert evaluation.reason == "FailedDependency"
    message = evaluation.message or ""
    assert "exited with code 3" in message, message
    assert "ssl:default" not in message


def test_one_replica_exiting_fails_the_evaluation_with_its_output(
    platform: LocalPlatform, models: str, tmp_path: Path
) -> None:
    """A crash is evidence about the system under test: the session fails (its other
    replicas stopped), and so does the evaluation, naming the replica that exited first."""
    dataset = ready_dataset(platform, tmp_path / "data", rows=400)
    service = _service(platform, models, "OneDies", marker=str(tmp_path / "died"))
    evaluation = _evaluate(platform, dataset, service, replicas=2)
    assert (evaluation.status, evaluation.reason) == (Status.Failed, "FailedDependency")
    message = evaluation.message or ""
    assert "exited with code 5" in message and "about to die" in message, message
    (session,) = platform.inferencesessions.query(inferenceService=service)
    assert session.status in (Status.Error, Status.Terminated)  # by its monitor, or the end


def test_terminating_an_evaluation_stops_it_within_seconds_keeping_what_it_wrote(
    platform: LocalPlatform, models: str, tmp_path: Path
) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=400)
    service = _service(platform, models, "OneAtATime", latency=0.1)
    request = {
        "account": ACCOUNT,
        "dataset": dataset,
        "inferenceSession": {"inferenceService": service},
    }
    evaluation, thread = _in_background(platform, request)
    # progress from the first instances, with a rate and an ETA
    message = until(
        lambda: (m := platform.evaluations.get(evaluation).message) and "ETA" in m and m,
        60,
        "no progress with an ETA",
    )
    assert re.search(r"\d+ / 400 instances, [\d.]+/s, ETA", message), message
    started = time.monotonic()
    terminated = platform.evaluations.terminate(evaluation)
    assert (terminated.status, terminated.reason) == (Status.Terminated, Reason.TerminateCommand)
    thread.join(10)
    assert not thread.is_alive(), "create() still blocks"
    assert time.monotonic() - started < 10
    ended = platform.evaluations.get(evaluation)
    assert ended.status == Status.Terminated
    # the evaluation's own session ended with it: no replica left answering
    sessions = platform.inferencesessions.query(inferenceService=service)
    assert sessions and all(s.status != Status.Ready for s in sessions)


def test_terminating_its_session_fails_the_evaluation(
    platform: LocalPlatform, models: str, tmp_path: Path
) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=400)
    service = _service(platform, models, "OneAtATime", latency=0.1)
    session = platform.inferencesessions.create(
        InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service)
    ).inferencesession
    request = {"account": ACCOUNT, "dataset": dataset, "inferenceSessionReference": session.id}
    evaluation, thread = _in_background(platform, request)
    until(
        lambda: "instances" in (platform.evaluations.get(evaluation).message or ""),
        60,
        "no progress",
    )
    platform.inferencesessions.terminate(session.id)
    thread.join(10)
    assert not thread.is_alive(), "create() still blocks"
    ended = platform.evaluations.get(evaluation)
    assert (ended.status, ended.reason) == (Status.Failed, "FailedDependency"), ended.message
    assert session.id in (ended.message or "")


@pytest.fixture
def limited() -> Iterator[FakeOpenAIServer]:
    """An OpenAI-compatible API answering in 50 ms, admitting 4 requests at a time."""
    with FakeOpenAIServer(latency=0.05, max_concurrent=4, retry_after=0.2) as server:
        yield server


def _openai_service(platform: LocalPlatform, url: str, **parameters: Any) -> str:
    interface = openai_interface("fake-model", api="completions", parameters=parameters)
    request = {
        "account": ACCOUNT,
        "name": "api",
        "runner": {"kind": "openai", "configuration": {"baseURL": f"{url}/v1"}},
        "interface": interface.model_dump(by_alias=True),
    }
    return platform.inferenceservices.create(request).id


def test_a_rate_limited_api_is_answered_with_few_rejections(
    platform: LocalPlatform, limited: FakeOpenAIServer, tmp_path: Path
) -> None:
    """Before, every worker that got a 429 moved on to the next prompt: the whole queue was
    refused every second (44,682 rejections for 1,000 prompts)."""
    dataset = ready_dataset(platform, tmp_path / "data", rows=300)
    service = _openai_service(platform, limited.url)
    evaluation = _evaluate(platform, dataset, service)
    assert evaluation.status == Status.Complete, evaluation.message
    stats = limited.app.stats()
    assert 300 <= stats["answered"] <= 303  # the completions, and the readiness checks
    assert stats["rejected_429"] < 0.5 * 300, stats
    table = platform.evaluations.open(evaluation.id).to_table()
    usage = table.column("_usage_").to_pylist()
    assert all(u and u["prompt_tokens"] > 0 and u["completion_tokens"] > 0 for u in usage)
    if stats["rejected_429"]:
        assert "HTTP 429" in platform.evaluations.logs(evaluation.id)


def test_a_rerun_with_a_new_service_of_the_same_spec_answers_from_the_cache(
    platform: LocalPlatform, limited: FakeOpenAIServer, tmp_path: Path
) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=40)
    first = _evaluate(
        platform, dataset, _openai_service(platform, limited.url), client={"cache": True}
    )
    assert first.status == Status.Complete, first.message
    sent = limited.app.stats()["answered"]
    # a rerun script makes a new service: same spec, new id
    second = _evaluate(
        platform, dataset, _openai_service(platform, limited.url), client={"cache": True}
    )
    assert second.status == Status.Complete, second.message
    # not one completion more (the session's readiness check, GET /v1/models, is answered too)
    assert limited.app.stats()["answered"] <= sent + 2
    assert "40 answers from the response cache" in (second.message or "")
    attempts = platform.evaluations.open(second.id).to_table().column("_attempts_")
    assert set(attempts.to_pylist()) == {0}
    # another replication is another answer: sent
    more = _evaluate(
        platform,
        dataset,
        _openai_service(platform, limited.url),
        client={"cache": True},
        replications=2,
    )
    assert more.status == Status.Complete, more.message
    answered = limited.app.stats()["answered"]
    assert sent + 40 <= answered <= sent + 44
    # a service of another spec is another cache
    other = _evaluate(
        platform,
        dataset,
        _openai_service(platform, limited.url, temperature=0.5),
        client={"cache": True},
    )
    assert other.status == Status.Complete, other.message
    assert answered + 40 <= limited.app.stats()["answered"] <= answered + 42
    # another account's service of the same spec never gets this account's answers
    answered = limited.app.stats()["answered"]
    interface = openai_interface("fake-model", api="completions").model_dump(by_alias=True)
    theirs = platform.inferenceservices.create(
        {
            "account": "someone-else",
            "name": "api",
            "runner": {"kind": "openai", "configuration": {"baseURL": f"{limited.url}/v1"}},
            "interface": interface,
        }
    )
    their_data = platform.datasets.create_arrow_dataset(
        tmp_path / "data", account="someone-else", name="data"
    )
    platform.datasets.upload_arrow_dataset(their_data, tmp_path / "data")
    stranger = platform.evaluations.create(
        {
            "account": "someone-else",
            "dataset": their_data.id,
            "inferenceSession": {"inferenceService": theirs.id},
            "client": {"cache": True},
        }
    )
    assert stranger.status == Status.Complete, stranger.message
    assert "response cache" not in (stranger.message or "")
    assert limited.app.stats()["answered"] >= answered + 40


def test_transient_errors_stop_at_the_retry_time_budget(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=10)
    with FakeOpenAIServer() as server:
        service = _openai_service(platform, server.url)
        session = platform.inferencesessions.create(
            InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service)
        ).inferencesession
        server.app.fail_every = 1  # from now on, every request: 503, Retry-After 0
        started = time.monotonic()
        evaluation = platform.evaluations.create(
            {
                "account": ACCOUNT,
                "dataset": dataset,
                "inferenceSessionReference": session.id,
                "client": {
                    "transientErrorRetryLimit": 100_000,
                    "transientErrorRetryBudgetSeconds": 3,
                },
            }
        )
        took = time.monotonic() - started
        requests = server.app.stats()["failed_503"]
    assert took < 60
    assert evaluation.status == Status.Failed
    message = evaluation.message or ""
    assert "503" in message and "10" in message, message
    assert requests < 10 * 40  # backed off, not hammered (Retry-After: 0 is not "at once")


def test_more_replicas_than_the_runner_allows_are_refused_before_anything_is_written(
    platform: LocalPlatform, models: str, tmp_path: Path
) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=5)
    service = _service(platform, models, "OneAtATime")
    with pytest.raises(errors.ValidationError) as info:
        _evaluate(platform, dataset, service, replicas=10_000)
    message = str(info.value)
    assert "inferenceSession.replicas" in message and "10000" in message, message
    assert service in message and "threads" in message  # the fix
    with pytest.raises(errors.ValidationError, match="replicas"):
        platform.inferencesessions.create(
            InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service, replicas=500)
        )
    assert platform.evaluations.query() == [] and platform.inferencesessions.query() == []
    # a service that runs elsewhere takes more lanes than processes, not unbounded
    api = _openai_service(platform, "http://127.0.0.1:9")
    with pytest.raises(errors.ValidationError, match="at most 64"):
        _evaluate(platform, dataset, api, replicas=65)
