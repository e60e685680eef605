"""Models: uploaded from a directory (Volume), fetched from a (fake) Hugging Face Hub, Mock."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import ACCOUNT, model_request, service_request
from tests.fake_hub import FakeHub

from assay import errors
from assay.core.models import FETCH_FAILED
from assay.local import LocalPlatform
from assay.schema.status import Reason, Status


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _model_files(directory: Path) -> Path:
    """A directory of model files, with the clutter a real one has."""
    (directory / "tokenizer").mkdir(parents=True)
    (directory / "config.json").write_text('{"model_type": "tiny"}')
    (directory / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    (directory / "tokenizer" / "vocab.txt").write_text("hello\nworld\n")
    (directory / ".cache" / "huggingface").mkdir(parents=True)
    (directory / ".cache" / "huggingface" / "x.metadata").write_text("cache")
    (directory / "__pycache__").mkdir()
    (directory / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    (directory / ".gitattributes").write_text("*.safetensors lfs")
    return directory


EXPECTED = ["config.json", "model.safetensors", "tokenizer/vocab.txt"]


# -- Volume: create_from_volume + upload_volume ------------------------------------------


def test_a_volume_model_waits_for_its_upload_then_is_ready_with_digests(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    source = _model_files(tmp_path / "model")
    model = platform.models.create_from_volume(source, account=ACCOUNT, name="tiny")
    assert (model.status, model.reason) == (Status.Created, Reason.WaitingForUpload)
    assert model.artifact.kind == "Volume" and model.source.kind == "Upload"
    assert model.artifact.volume is not None
    declared = {f.path: f for f in model.artifact.volume.files}
    assert sorted(declared) == EXPECTED  # hidden files and caches left out
    assert declared["model.safetensors"].size == 10240
    assert model.resources.storage == str(sum(f.size for f in declared.values()))

    service = platform.inferenceservices.create(service_request(model.id))
    assert (service.status, service.reason) == (Status.Created, Reason.UnsatisfiedDependency)

    ready = platform.models.upload_volume(model, source)
    assert ready.status == Status.Ready, ready.message
    assert ready.message == "3 files (10,274 bytes)"
    assert ready.artifact.volume is not None
    for file in ready.artifact.volume.files:
        assert file.digest.md5 == _md5(source / file.path)
    directory = platform.models.files_dir(model.id)
    assert (
        sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
        == EXPECTED
    )
    assert (directory / "config.json").read_text() == '{"model_type": "tiny"}'
    assert platform.inferenceservices.get(service.id).status == Status.Ready


def test_a_file_changed_after_create_is_refused_and_nothing_is_kept(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    source = _model_files(tmp_path / "model")
    model = platform.models.create_from_volume(source, account=ACCOUNT, name="tiny")
    (source / "tokenizer" / "vocab.txt").write_text("changed\n")
    with pytest.raises(errors.DataIntegrityError) as info:
        platform.models.upload_volume(model.id, source)
    assert "tokenizer/vocab.txt" in str(info.value)
    again = platform.models.get(model.id)
    assert (again.status, again.reason) == (Status.Created, Reason.WaitingForUpload)
    assert platform.core.storage.list(model.id) == []


def test_only_declared_files_are_accepted(platform: LocalPlatform, tmp_path: Path) -> None:
    source = _model_files(tmp_path / "model")
    model = platform.models.create_from_volume(source, account=ACCOUNT, name="tiny")
    with pytest.raises(errors.ValidationError, match="not one of its files"):
        platform.models.put_artifact(model.id, "extra.bin", b"x")
    platform.models.put_artifact(model.id, "config.json", source / "config.json")
    with pytest.raises(errors.ValidationError, match="2 declared files were not uploaded"):
        platform.models.finalize(model.id)


def test_create_from_volume_refuses_an_empty_directory(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    (tmp_path / "empty" / ".git").mkdir(parents=True)
    (tmp_path / "empty" / ".git" / "HEAD").write_text("ref")
    with pytest.raises(errors.ValidationError, match="no files"):
        platform.models.create_from_volume(tmp_path / "empty", account=ACCOUNT, name="x")


def test_requests_must_say_what_to_fetch_or_upload(platform: LocalPlatform) -> None:
    volume = {**model_request(), "artifact": {"kind": "Volume"}, "source": {"kind": "Upload"}}
    with pytest.raises(errors.ValidationError, match=r"artifact\.volume\.files"):
        platform.models.create(volume)
    hub = {**model_request(), "source": {"kind": "HuggingFaceHub"}}
    with pytest.raises(errors.ValidationError, match=r"source\.huggingFaceHub"):
        platform.models.create(hub)
    assert platform.models.query() == []


def test_a_mock_model_is_ready_at_once_and_has_no_files(platform: LocalPlatform) -> None:
    model = platform.models.create(model_request())
    assert (model.status, model.reason) == (Status.Ready, None)
    with pytest.raises(errors.ValidationError, match="has no files"):
        platform.models.files_dir(model.id)


def test_files_dir_of_a_model_still_waiting_is_refused(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    model = platform.models.create_from_volume(
        _model_files(tmp_path / "m"), account=ACCOUNT, name="m"
    )
    with pytest.raises(errors.ConflictError, match="WaitingForUpload"):
        platform.models.files_dir(model.id)


# -- HuggingFaceHub: fetched from a fake hub on loopback -----------------------------------


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    import huggingface_hub.constants

    with FakeHub() as fake:
        # set after huggingface_hub is imported: Assay must read HF_ENDPOINT at fetch time
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield fake


def _hub_request(repo: str, revision: str = "main", **patterns: list[str]) -> dict[str, object]:
    return {
        **model_request("from-hub"),
        "artifact": {
            "kind": "HuggingFaceCache",
            "huggingFaceCache": {"repoID": repo, "revision": revision},
        },
        "source": {
            "kind": "HuggingFaceHub",
            "huggingFaceHub": {"repoID": repo, "revision": revision, **patterns},
        },
    }


def test_a_hub_model_is_fetched_stored_and_ready(
    platform: LocalPlatform, hub: FakeHub, tmp_path: Path
) -> None:
    source = _model_files(tmp_path / "repo")
    commit = hub.add_repo("org/tiny-model", source)
    model = platform.models.create(_hub_request("org/tiny-model"))
    assert model.status == Status.Ready, model.message
    assert model.message == "3 files (10,274 bytes) fetched from org/tiny-model@main"
    assert model.artifact.kind == "HuggingFaceCache"
    assert model.artifact.volume is not None
    files = {f.path: f for f in model.artifact.volume.files}
    assert sorted(files) == EXPECTED  # the repo's .gitattributes and caches are left out
    for path, file in files.items():
        assert (file.size, file.digest.md5) == ((source / path).stat().st_size, _md5(source / path))
    directory = platform.models.files_dir(model.id)
    stored = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*"))
    assert stored == ["config.json", "model.safetensors", "tokenizer", "tokenizer/vocab.txt"]
    assert ("GET", "/api/models/org/tiny-model/revision/main") in hub.requests
    assert ("GET", f"/org/tiny-model/resolve/{commit}/model.safetensors") in hub.requests
    assert not (tmp_path / "hf-home" / "hub").exists()  # nothing left in the user's cache


def test_allow_and_ignore_patterns_choose_the_files(
    platform: LocalPlatform, hub: FakeHub, tmp_path: Path
) -> None:
    hub.add_repo("org/tiny-model", _model_files(tmp_path / "repo"))
    only_json = platform.models.create(_hub_request("org/tiny-model", allowPatterns=["*.json"]))
    assert only_json.artifact.volume is not None
    assert [f.path for f in only_json.artifact.volume.files] == ["config.json"]
    no_weights = platform.models.create(
        _hub_request("org/tiny-model", ignorePatterns=["*.safetensors"])
    )
    assert no_weights.artifact.volume is not None
    assert [f.path for f in no_weights.artifact.volume.files] == [
        "config.json",
        "tokenizer/vocab.txt",
    ]


def test_a_missing_repo_fails_the_model_and_its_dependents(
    platform: LocalPlatform, hub: FakeHub
) -> None:
    model = platform.models.create(_hub_request("org/no-such-model"))
    assert (model.status, model.reason) == (Status.Error, FETCH_FAILED)
    message = model.message or ""
    assert "'org/no-such-model'" in message and "'main'" in message, message
    assert "RepositoryNotFoundError" in message and hub.url in message, message
    assert "\n" not in message
    assert platform.core.storage.list(model.id) == []
    service = platform.inferenceservices.create(service_request(model.id))
    assert (service.status, service.reason) == (Status.Error, Reason.FailedDependency)


def test_a_missing_revision_names_the_revision(
    platform: LocalPlatform, hub: FakeHub, tmp_path: Path
) -> None:
    hub.add_repo("org/tiny-model", _model_files(tmp_path / "repo"))
    model = platform.models.create(_hub_request("org/tiny-model", revision="v9"))
    assert (model.status, model.reason) == (Status.Error, FETCH_FAILED)
    assert "'v9'" in (model.message or "") and "RevisionNotFoundError" in (model.message or "")


def test_an_unreachable_hub_fails_with_the_cause(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import huggingface_hub.constants

    with FakeHub() as gone:
        url = gone.url
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    model = platform.models.create(_hub_request("org/tiny-model"))
    assert (model.status, model.reason) == (Status.Error, FETCH_FAILED)
    assert url in (model.message or "") and "'org/tiny-model'" in (model.message or "")
