"""The huggingface runner: tiny transformers models built on the spot (no downloads), served by
replica processes; the service class in-process; the runner's checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests import tiny_models
from tests.conftest import ACCOUNT, model_request
from tests.fake_hub import FakeHub

from assay import errors
from assay.inference.hf_service import TASK_ENDPOINTS, HuggingFaceService
from assay.inference.runners.huggingface import huggingface_interface
from assay.local import LocalPlatform
from assay.schema.requests import InferenceSessionCreateRequest
from assay.schema.status import Status


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models.gpt2(tmp_path_factory)


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models.classifier(tmp_path_factory)


def _volume_model(platform: LocalPlatform, directory: Path, name: str = "tiny") -> str:
    model = platform.models.create_from_volume(directory, account=ACCOUNT, name=name)
    ready = platform.models.upload_volume(model, directory)
    assert ready.status == Status.Ready, ready.message
    return ready.id


def _service(
    platform: LocalPlatform,
    model_id: str | None,
    task: object,
    *,
    interface: str = "",
    **config: object,
) -> str:
    """A huggingface service for ``task``, with the interface of the task ``interface`` (by
    default the same)."""
    request: dict[str, object] = {
        "account": ACCOUNT,
        "name": "hf-service",
        "runner": {"kind": "huggingface", "configuration": {"task": task, **config}},
        "interface": huggingface_interface(interface or str(task)).model_dump(by_alias=True),
    }
    if model_id is not None:
        request["model"] = model_id
    return platform.inferenceservices.create(request).id


def _session(platform: LocalPlatform, service_id: str, replicas: int = 1) -> tuple[str, str]:
    created = platform.inferencesessions.create(
        InferenceSessionCreateRequest(
            account=ACCOUNT, inferenceService=service_id, replicas=replicas
        )
    )
    session = created.inferencesession
    session = platform.inferencesessions.get(session.id)
    assert session.status == Status.Ready, session.message
    return session.id, created.token


# -- replica processes -----------------------------------------------------------------------


@pytest.mark.slow
def test_text_generation_session_with_two_replicas(platform: LocalPlatform, gpt2_dir: Path) -> None:
    model_id = _volume_model(platform, gpt2_dir)
    greedy = {"max_new_tokens": 4, "do_sample": False}
    service_id = _service(platform, model_id, "text-generation", generateArgs=greedy, batchSize=4)
    session_id, token = _session(platform, service_id, replicas=2)
    with platform.inferencesessions.client(session_id, token) as client:
        (reply,) = client.infer({"text": "hello"})
        assert isinstance(reply["text"], str) and reply["text"].strip()
        assert client.infer({"text": "hello"}) == [reply]  # greedy: the same every time
        prompts = [{"text": t} for t in tiny_models.CORPUS * 2]
        replies = client.infer_many(prompts)
        assert len(replies) == len(prompts)
        assert all(len(r) == 1 and isinstance(r[0]["text"], str) for r in replies)
    platform.inferencesessions.terminate(session_id)


@pytest.mark.slow
def test_classification_session_from_a_model_fetched_from_the_hub(
    platform: LocalPlatform,
    classifier_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    import huggingface_hub.constants

    with FakeHub() as hub:
        hub.add_repo("tiny/classifier", classifier_dir)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        source = {"repoID": "tiny/classifier", "revision": "main"}
        model = platform.models.create(
            {
                **model_request("classifier"),
                "artifact": {"kind": "HuggingFaceCache", "huggingFaceCache": source},
                "source": {"kind": "HuggingFaceHub", "huggingFaceHub": source},
            }
        )
    assert model.status == Status.Ready, model.message
    service_id = _service(platform, model.id, "text-classification", generateArgs={"top_k": None})
    session_id, token = _session(platform, service_id)
    with platform.inferencesessions.client(session_id, token) as client:
        replies = client.infer({"text": "good morning"})
        assert sorted(r["label"] for r in replies) == sorted(tiny_models.LABELS.values())
        assert sum(r["score"] for r in replies) == pytest.approx(1.0)
        batch = client.infer_many([{"text": t} for t in tiny_models.CORPUS])
        assert [len(b) for b in batch] == [2] * len(tiny_models.CORPUS)
        with pytest.raises(errors.ValidationError, match="'text' string"):
            client.infer({"prompt": "no text"})
    platform.inferencesessions.terminate(session_id)


# -- the service in-process ------------------------------------------------------------------


@pytest.fixture(scope="module")
def generator(gpt2_dir: Path) -> HuggingFaceService:
    return HuggingFaceService(
        str(gpt2_dir),
        "text-generation",
        generate_args={"max_new_tokens": 3, "do_sample": True, "num_return_sequences": 2},
        batch_size=2,
    )


def test_generation_returns_one_text_per_sequence(generator: HuggingFaceService) -> None:
    assert generator.endpoints == ["generate"]
    replies = generator.infer_batch(
        "generate", [{"text": "hello"}, {"text": "the quick brown fox"}, {"text": "open"}]
    )
    assert [len(r) for r in replies] == [2, 2, 2]
    assert all(isinstance(o["text"], str) for r in replies for o in r)
    with pytest.raises(ValueError, match="request 1 of the batch"):
        generator.infer_batch("generate", [{"text": "a"}, {"text": 3}])
    with pytest.raises(KeyError, match="'generate'"):
        generator.infer("classify", {"text": "a"})


def test_classification_top_k(classifier_dir: Path) -> None:
    best = HuggingFaceService(str(classifier_dir), "text-classification")
    (reply,) = best.infer("classify", {"text": "bad news"})
    assert reply["label"] in tiny_models.LABELS.values() and 0 < reply["score"] < 1
    every = HuggingFaceService(
        str(classifier_dir), "text-classification", generate_args={"top_k": None}
    )
    assert len(every.infer("classify", {"text": "bad news"})) == 2


def test_embeddings_are_mean_pooled_without_the_padding(classifier_dir: Path) -> None:
    service = HuggingFaceService(str(classifier_dir), "feature-extraction", batch_size=4)
    texts = ["hello", "the quick brown fox jumps", "good morning"]
    alone = [service.infer("embed", {"text": t})[0]["embedding"] for t in texts]
    batched = service.infer_batch("embed", [{"text": t} for t in texts])
    assert all(len(v) == 16 for v in alone)
    for single, (together,) in zip(alone, batched, strict=True):
        assert together["embedding"] == pytest.approx(single, abs=1e-5)


# -- checks --------------------------------------------------------------------------------


@pytest.fixture
def files_model(platform: LocalPlatform, tmp_path: Path) -> str:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "config.json").write_text("{}")
    return _volume_model(platform, tmp_path / "files")


def test_the_runner_refuses_a_service_it_cannot_run(
    platform: LocalPlatform, files_model: str
) -> None:
    with pytest.raises(errors.ValidationError) as info:
        _service(platform, files_model, "summarize-everything", interface="text-generation")
    assert "'summarize-everything'" in str(info.value)
    assert all(task in str(info.value) for task in TASK_ENDPOINTS)
    with pytest.raises(errors.ValidationError, match="not one of the tasks"):
        _service(platform, files_model, ["text-generation"], interface="text-generation")
    with pytest.raises(errors.ValidationError, match="set model"):
        _service(platform, None, "text-generation")
    mock = platform.models.create(model_request()).id
    with pytest.raises(errors.ValidationError, match="Mock"):
        _service(platform, mock, "text-generation")
    with pytest.raises(errors.ValidationError, match="batchSize"):
        _service(platform, files_model, "text-generation", batchSize=0)
    with pytest.raises(errors.ValidationError, match=r"interface\.endpoint"):
        _service(platform, files_model, "text-generation", interface="text-classification")


def test_a_model_without_config_json_fails_the_session(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "weights.bin").write_bytes(b"\0")
    service_id = _service(platform, _volume_model(platform, tmp_path / "files"), "text-generation")
    created = platform.inferencesessions.create(
        InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service_id)
    )
    session = platform.inferencesessions.get(created.inferencesession.id)
    assert session.status == Status.Error
    assert "no config.json" in (session.message or "")


def test_interfaces_by_task() -> None:
    for task, endpoint in TASK_ENDPOINTS.items():
        interface = huggingface_interface(task)
        assert interface.endpoint == endpoint
        responses = interface.outputSchema.arrow_schema().field("responses").type.value_type
        names = {responses.field(i).name for i in range(responses.num_fields)}
        expected = {"generate": {"text"}, "classify": {"label", "score"}, "embed": {"embedding"}}
        assert expected[endpoint] <= names
    with pytest.raises(errors.ValidationError, match="text-generation"):
        huggingface_interface("translation")


def test_the_runner_and_models_import_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from assay.inference.runners.base import runner_for\n"
        "import assay.core.models, assay.inference.hf_service\n"
        "runner_for('huggingface')\n"
        "heavy = ['torch', 'transformers', 'huggingface_hub']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == ""
