"""The parts of ``assay demo``, quickly: the data, the training, the served class, the
notebook's declarations, the reuse of entities, the tables."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from assay import errors
from assay.demo import classifiers, digits, notebook, served, text, version
from assay.demo.served import DigitClassifier
from assay.demo.steps import STEP_LABEL, VERSION_LABEL, Steps
from assay.local import LocalPlatform
from assay.schema.base import LABEL_VALUE_PATTERN
from assay.schema.platform import CurveSpec, ScoreSpec


@pytest.fixture(scope="module")
def split() -> digits.Split:
    return digits.load_split()


def test_split_is_stratified_disjoint_and_the_same_every_time(split: digits.Split) -> None:
    again = digits.load_split()
    assert np.array_equal(split.test_index, again.test_index)
    assert split.test_pixels.shape == (540, 64) and split.train_pixels.shape == (1257, 64)
    assert split.test_pixels.min() >= 0.0 and split.test_pixels.max() <= 1.0
    everything = np.bincount(np.concatenate([split.train_labels, split.test_labels]))
    assert np.allclose(np.bincount(split.test_labels) / everything, 0.3, atol=0.01)  # stratified
    train = set(np.arange(1797)) - set(split.test_index.tolist())
    assert len(train) == len(split.train_labels)


def test_perturbation_is_seeded_noise_within_the_pixel_range(split: digits.Split) -> None:
    noisy = digits.perturb(split.test_pixels)
    assert np.array_equal(noisy, digits.perturb(split.test_pixels))
    assert not np.array_equal(noisy, digits.perturb(split.test_pixels, seed=2))
    assert noisy.shape == split.test_pixels.shape
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    change = np.abs(noisy - split.test_pixels).mean()
    assert 0.1 < change < 0.3  # sigma 0.3, clipped at both ends
    assert np.array_equal(digits.perturb(split.test_pixels, noise=0.0), split.test_pixels)


def test_table_has_index_pixels_and_string_labels(split: digits.Split) -> None:
    rows = digits.table(split.test_index[:3], split.test_pixels[:3], split.test_labels[:3])
    assert rows.schema == pa.schema(
        [("_index_", pa.int64()), ("pixels", pa.list_(pa.float64())), ("label", pa.string())]
    )
    first = rows.to_pylist()[0]
    assert first["_index_"] == int(split.test_index[0])
    assert first["pixels"] == pytest.approx(split.test_pixels[0].tolist())
    assert first["label"] == str(split.test_labels[0])


@pytest.mark.parametrize("spec", classifiers.MODELS, ids=lambda s: s.key)
def test_training_is_deterministic_and_packaged_reproducibly(
    spec: classifiers.ModelSpec, split: digits.Split, tmp_path: Path
) -> None:
    first = classifiers.train(spec, split)
    second = classifiers.train(spec, split)
    assert first.arrays.keys() == second.arrays.keys()
    for name in first.arrays:
        assert np.array_equal(first.arrays[name], second.arrays[name]), name
    digests = []
    for run in ("a", "b"):
        directory = classifiers.write_package(first, tmp_path / run)
        files = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*"))
        assert files == ["digit_classifier", "digit_classifier/__init__.py",
                         "digit_classifier/weights.npz"]  # fmt: skip
        weights = directory / "digit_classifier" / "weights.npz"
        digests.append(hashlib.md5(weights.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    source = (tmp_path / "a" / "digit_classifier" / "__init__.py").read_text()
    assert source == Path(served.__file__).read_text()
    assert "sklearn" not in re.sub(r'""".*?"""', "", source, flags=re.S)  # numpy only


@pytest.mark.parametrize("spec", classifiers.MODELS, ids=lambda s: s.key)
def test_served_class_reproduces_scikit_learn(
    spec: classifiers.ModelSpec, split: digits.Split, tmp_path: Path
) -> None:
    model = spec.fit(split)
    directory = classifiers.write_package(
        classifiers.Trained(spec, spec.export(model), 0.0), tmp_path
    )
    served_model = DigitClassifier(str(directory / "digit_classifier" / "weights.npz"))
    for pixels in (split.test_pixels, digits.perturb(split.test_pixels)):
        expected = model.predict_proba(pixels)
        assert np.allclose(served_model.probabilities(pixels), expected, atol=1e-9)
    assert served_model.labels == [str(d) for d in range(10)]


@pytest.fixture(scope="module", params=classifiers.MODELS, ids=lambda s: s.key)
def model(
    request: pytest.FixtureRequest, split: digits.Split, tmp_path_factory: pytest.TempPathFactory
) -> DigitClassifier:
    trained = classifiers.train(request.param, split)
    directory = classifiers.write_package(trained, tmp_path_factory.mktemp(request.param.key))
    return DigitClassifier(str(directory / "digit_classifier" / "weights.npz"))


def test_served_class_answers_like_the_classifier_mock(
    model: DigitClassifier, split: digits.Split
) -> None:
    requests = [{"pixels": row.tolist()} for row in split.test_pixels[:5]]
    replies = model.infer_batch("classify", requests)
    assert len(replies) == 5
    for request, (reply,) in zip(requests, replies, strict=True):
        assert set(reply) == {"label", "scores"}
        assert [s["label"] for s in reply["scores"]] == model.labels
        scores = [s["score"] for s in reply["scores"]]
        assert sum(scores) == pytest.approx(1.0)
        assert reply["label"] == model.labels[int(np.argmax(scores))]
        assert model.infer("classify", request) == [reply]  # exactly: whatever the batch
    assert model.infer_batch("classify", []) == []


@pytest.mark.parametrize(
    ("endpoint", "request_", "message"),
    [
        ("generate", {"pixels": [0.0] * 64}, "unknown endpoint 'generate'"),
        ("classify", {"text": "seven"}, "send {'pixels': [64 numbers]}"),
        ("classify", {"pixels": [0.0] * 63}, "send {'pixels': [64 numbers]}"),
        ("classify", {"pixels": ["a"] * 64}, "every pixel must be a number"),
    ],
)
def test_served_class_refuses_bad_requests_with_value_error(
    model: DigitClassifier, endpoint: str, request_: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        model.infer_batch(endpoint, [request_])


def test_notebook_declares_valid_scores_and_is_written(tmp_path: Path) -> None:
    specs = [CurveSpec.model_validate(s) if "dimensions" in s else ScoreSpec.model_validate(s)
             for s in notebook.SCORES]  # fmt: skip
    assert [s.priority for s in specs if isinstance(s, ScoreSpec)].count("primary") == 1
    path = notebook.write_notebook(tmp_path / notebook.NOTEBOOK)
    import nbformat

    nb = nbformat.read(path, as_version=4)
    assert [c.cell_type for c in nb.cells] == [kind for kind, _ in notebook.CELLS]
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for name in (s["name"] for s in notebook.SCORES):
        assert f'"{name}"' in code, name
    for keyword in [*notebook.PARAMETERS, *notebook.INPUTS]:
        assert f'"{keyword}"' in code, keyword
    compile(code, "notebook", "exec")


def test_version_is_a_label_value_and_stable() -> None:
    assert version() == version()
    assert re.match(LABEL_VALUE_PATTERN, version()) and len(version()) <= 63


def test_steps_reuse_what_succeeded_and_report_failures(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text("x = 1\n")
    out = io.StringIO()
    with LocalPlatform(storage_root=tmp_path / "data", account="demo") as platform:

        def make() -> Any:
            module = platform.modules.create_package(package, account="demo", name="m")
            return platform.modules.upload_package(module, package)

        steps = Steps("demo", "v1", out)
        first = steps.ensure(platform.modules, "module.m", "a module", make)
        assert first.labels[STEP_LABEL] == "module.m" and first.labels[VERSION_LABEL] == "v1"
        again = steps.ensure(platform.modules, "module.m", "a module", make)
        assert again.id == first.id and (steps.created, steps.reused) == (1, 1)
        other = Steps("demo", "v2").ensure(platform.modules, "module.m", "a module", make)
        assert other.id != first.id  # another demo version starts over
        fresh = steps.ensure(platform.modules, "module.m", "a module", make, reuse=False)
        assert fresh.id != first.id
        output = out.getvalue()
        assert "made" in output and "reused" in output and f"Module {first.id}" in output

        def fails() -> Any:
            module = platform.modules.create_package(package, account="demo", name="bad")
            return platform.modules.get(module.id)  # never uploaded: not Ready

        with pytest.raises(errors.WorkflowFailedError, match=r"demo step module\.bad: Module"):
            steps.ensure(platform.modules, "module.bad", "a module", fails)


def test_prompts_have_three_kinds_of_ten() -> None:
    table = text.prompts_table()
    assert table.column("_index_").to_pylist() == list(range(30))
    kinds = table.column("category").to_pylist()
    assert {k: kinds.count(k) for k in set(kinds)} == {"benign": 10, "harmful": 10, "personal": 10}
    emails = [re.search(text.EMAIL_PATTERN, t) for t in table.column("text").to_pylist()]
    assert [k for k, e in zip(kinds, emails, strict=True) if e] == ["personal"] * 10


def test_missing_scikit_learn_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a)
    )
    with pytest.raises(errors.ValidationError, match=re.escape("pip install 'assay[demo]'")):
        classifiers.require_sklearn()
