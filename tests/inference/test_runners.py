"""Every runner kind through LocalPlatform: python (real replica processes), http and openai
(against the fake OpenAI-compatible server on loopback), vllm (refused without a GPU)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from tests.conftest import ACCOUNT

from assay import errors
from assay.inference.fake_openai import FakeOpenAIServer
from assay.inference.runners.openai import openai_interface
from assay.local import LocalPlatform
from assay.schema.dataschema import DataSchema
from assay.schema.requests import InferenceSessionCreateRequest
from assay.schema.status import Reason, Status

MODEL_SOURCE = '''
import os
import threading
import time


class Pair:
    """Answers only when two calls are in the replica at once."""

    endpoints = ["echo"]

    def __init__(self):
        self.barrier = threading.Barrier(2, timeout=20)

    def infer(self, endpoint, request):
        self.barrier.wait()
        return [{"text": request["text"]}]


class Echo:
    """Upper-cases the text; says which process answered."""

    endpoints = ["echo"]

    def __init__(self, delay_load: float = 0.0, suffix: str = ""):
        time.sleep(delay_load)
        self.suffix = suffix

    def infer(self, endpoint, request):
        return [{"text": request["text"].upper() + self.suffix, "pid": os.getpid()}]

    def infer_batch(self, endpoint, requests):
        return [self.infer(endpoint, r) for r in requests]
'''


def _interface(endpoint: str = "echo") -> dict[str, object]:
    schema = DataSchema.make_output_schema(
        pa.schema([pa.field("text", pa.string(), nullable=False)])
    )
    return {"endpoint": endpoint, "outputSchema": schema.model_dump(by_alias=True)}


@pytest.fixture
def module_id(platform: LocalPlatform, tmp_path: Path) -> str:
    package = tmp_path / "pkg"
    (package / "echomodel").mkdir(parents=True)
    (package / "echomodel" / "__init__.py").write_text("")
    (package / "echomodel" / "model.py").write_text(MODEL_SOURCE)
    module = platform.modules.create_package(package, account=ACCOUNT, name="echo")
    return platform.modules.upload_package(module, package).id


def _python_service(platform: LocalPlatform, module_id: str, **config: object) -> str:
    request = {
        "account": ACCOUNT,
        "name": "echo",
        "runner": {
            "kind": "python",
            "configuration": {"module": module_id, "target": "echomodel.model:Echo", **config},
        },
        "interface": _interface(),
    }
    return platform.inferenceservices.create(request).id


def _start(platform: LocalPlatform, service_id: str, replicas: int = 1) -> tuple[str, str]:
    created = platform.inferencesessions.create(
        InferenceSessionCreateRequest(
            account=ACCOUNT, inferenceService=service_id, replicas=replicas
        )
    )
    return created.inferencesession.id, created.token


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait(condition, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.mark.slow
def test_python_runner_replicas_share_the_load_and_leave_no_orphans(
    platform: LocalPlatform, module_id: str
) -> None:
    service_id = _python_service(platform, module_id, kwargs={"suffix": "!"})
    assert platform.inferenceservices.get(service_id).dependencies() == [module_id]
    session_id, token = _start(platform, service_id, replicas=2)
    session = platform.inferencesessions.get(session_id)
    assert (session.status, session.message) == (Status.Ready, "2 replicas ready"), session.message
    assert platform.inferencesessions.ready(session_id)
    client = platform.inferencesessions.client(session_id, token)
    pids = {client.infer({"text": f"hi {i}"})[0]["pid"] for i in range(10)}
    assert len(pids) == 2
    assert client.infer({"text": "hal"})[0]["text"] == "HAL!"
    batch = client.infer_many([{"text": str(i)} for i in range(32)])
    assert [b[0]["text"] for b in batch] == [f"{i}!" for i in range(32)]
    client.close()
    platform.close()
    _wait(lambda: not any(_pid_alive(p) for p in pids))


@pytest.mark.slow
def test_a_crashed_replica_fails_the_session_with_its_exit(
    platform: LocalPlatform, module_id: str
) -> None:
    service_id = _python_service(platform, module_id)
    session_id, token = _start(platform, service_id, replicas=2)
    client = platform.inferencesessions.client(session_id, token)
    pid = client.infer({"text": "x"})[0]["pid"]
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: platform.inferencesessions.get(session_id).status != Status.Ready)
    session = platform.inferencesessions.get(session_id)
    assert (session.status, session.reason) == (Status.Error, "ReplicaFailed")
    assert "exited with code" in (session.message or "")
    client.close()


@pytest.mark.slow
def test_a_replica_that_never_gets_ready_fails_the_session(
    platform: LocalPlatform, module_id: str
) -> None:
    service_id = _python_service(
        platform, module_id, kwargs={"delay_load": 60}, readyTimeoutSeconds=1
    )
    session_id, _ = _start(platform, service_id)
    session = platform.inferencesessions.get(session_id)
    assert session.status == Status.Error
    assert "ready" in (session.message or "")


@pytest.mark.slow
def test_python_runner_threads_reach_the_replica(platform: LocalPlatform, module_id: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    request = {
        "account": ACCOUNT,
        "name": "pair",
        "runner": {
            "kind": "python",
            "configuration": {"module": module_id, "target": "echomodel.model:Pair", "threads": 2},
        },
        "interface": _interface(),
    }
    session_id, token = _start(platform, platform.inferenceservices.create(request).id)
    with (
        platform.inferencesessions.client(session_id, token) as client,
        ThreadPoolExecutor(2) as pool,
    ):
        replies = list(pool.map(lambda t: client.infer({"text": t}), ["a", "b"]))
    assert sorted(r[0]["text"] for r in replies) == ["a", "b"]


def test_python_runner_target_is_checked_at_create(platform: LocalPlatform, module_id: str) -> None:
    with pytest.raises(errors.ValidationError) as info:
        platform.inferenceservices.create(
            {
                "account": ACCOUNT,
                "name": "x",
                "runner": {
                    "kind": "python",
                    "configuration": {"module": module_id, "target": "echomodel.model:Nope"},
                },
                "interface": _interface(),
            }
        )
    assert "echomodel.model:Nope" in str(info.value)
    with pytest.raises(errors.NotFoundError):
        platform.inferenceservices.create(
            {
                "account": ACCOUNT,
                "name": "x",
                "runner": {
                    "kind": "python",
                    "configuration": {"module": "f" * 32, "target": "a.b:C"},
                },
                "interface": _interface(),
            }
        )


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key="sk-test") as server:
        yield server


def test_openai_runner_chat(
    platform: LocalPlatform, fake_openai: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-test")
    interface = openai_interface("fake-model", parameters={"n": 2})
    service = platform.inferenceservices.create(
        {
            "account": ACCOUNT,
            "name": "chat",
            "runner": {
                "kind": "openai",
                "configuration": {
                    "baseURL": f"{fake_openai.url}/v1",
                    "model": "fake-model",
                    "credential": {"env": "FAKE_OPENAI_KEY"},
                },
            },
            "interface": interface.model_dump(by_alias=True),
        }
    )
    assert "sk-test" not in service.json()
    session_id, token = _start(platform, service.id, replicas=2)
    assert platform.inferencesessions.get(session_id).status == Status.Ready
    with platform.inferencesessions.client(session_id, token) as client:
        replies = client.infer({"text": "Open the pod bay doors"})
    assert len(replies) == 2 and all(isinstance(r["text"], str) and r["text"] for r in replies)


def test_http_runner_with_a_platform_secret(
    platform: LocalPlatform, fake_openai: FakeOpenAIServer
) -> None:
    platform.secrets.set("fake-openai", "sk-test")
    interface = openai_interface("fake-model", api="completions")
    service = platform.inferenceservices.create(
        {
            "account": ACCOUNT,
            "name": "completions",
            "runner": {
                "kind": "http",
                "configuration": {
                    "url": f"{fake_openai.url}/v1",
                    "credential": {"secret": "fake-openai"},
                },
            },
            "interface": interface.model_dump(by_alias=True),
        }
    )
    session_id, token = _start(platform, service.id)
    with platform.inferencesessions.client(session_id, token) as client:
        (reply,) = client.infer({"text": "Hello"})
    assert isinstance(reply["text"], str)


def test_http_runner_wrong_credential_is_reported(
    platform: LocalPlatform, fake_openai: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG_KEY", "sk-wrong")
    interface = openai_interface("fake-model")
    service = platform.inferenceservices.create(
        {
            "account": ACCOUNT,
            "name": "chat",
            "runner": {
                "kind": "http",
                "configuration": {
                    "url": f"{fake_openai.url}/v1",
                    "credential": {"env": "WRONG_KEY"},
                },
            },
            "interface": interface.model_dump(by_alias=True),
        }
    )
    session_id, token = _start(platform, service.id)
    with (
        platform.inferencesessions.client(session_id, token) as client,
        pytest.raises(errors.AuthenticationError),
    ):
        client.infer({"text": "Hello"})


def test_missing_credential_variable_fails_the_session(
    platform: LocalPlatform, fake_openai: FakeOpenAIServer
) -> None:
    service = platform.inferenceservices.create(
        {
            "account": ACCOUNT,
            "name": "chat",
            "runner": {
                "kind": "http",
                "configuration": {
                    "url": fake_openai.url,
                    "credential": {"env": "ASSAY_NO_SUCH_VARIABLE"},
                },
            },
            "interface": openai_interface("fake-model").model_dump(by_alias=True),
        }
    )
    session_id, _ = _start(platform, service.id)
    session = platform.inferencesessions.get(session_id)
    assert session.status == Status.Error and "ASSAY_NO_SUCH_VARIABLE" in (session.message or "")


def test_vllm_without_a_gpu_says_it_needs_one(platform: LocalPlatform) -> None:
    from assay.inference.runners.vllm import gpu_problem

    if gpu_problem() is None:
        pytest.skip("this machine can run vLLM; the GPU path is tested on the device")
    model = platform.models.create(
        {
            "account": ACCOUNT,
            "name": "tiny",
            "artifact": {"kind": "Mock"},
            "source": {"kind": "Mock"},
            "resources": {"storage": "1Gi"},
        }
    )
    service = platform.inferenceservices.create(
        {
            "account": ACCOUNT,
            "name": "vllm",
            "model": model.id,
            "runner": {"kind": "vllm"},
            "interface": openai_interface("tiny").model_dump(by_alias=True),
        }
    )
    session_id, _ = _start(platform, service.id)
    session = platform.inferencesessions.get(session_id)
    assert session.status == Status.Error
    assert "needs an NVIDIA GPU" in (session.message or "")
    assert session.reason == Reason.WorkflowError


def test_http_ready_path_must_be_a_path(platform: LocalPlatform) -> None:
    request = {
        "account": ACCOUNT,
        "name": "remote",
        "runner": {
            "kind": "http",
            "configuration": {
                "url": "http://127.0.0.1:9/",
                "readyPath": "http://127.0.0.1:9/health",
            },
        },
        "interface": _interface("generate"),
    }
    with pytest.raises(errors.ValidationError, match="readyPath"):
        platform.inferenceservices.create(request)
