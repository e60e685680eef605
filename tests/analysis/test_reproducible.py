"""Every built-in method is reproducible: the same inputs and arguments give byte-identical
output (the bootstrap's resampling is seeded), checked by the sha256 of the output files that
provenance records for each run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import ACCOUNT

from assay.analysis import builtin
from assay.local import LocalPlatform, mocks
from assay.schema.status import Status


def _dataset(platform: LocalPlatform, directory: Path) -> str:
    directory.mkdir(parents=True)
    words = {"negative": "awful", "neutral": "okay", "positive": "great"}
    labels = [("negative", "neutral", "positive")[i % 3] for i in range(40)]
    pq.write_table(
        pa.table(
            {
                "_index_": pa.array(range(40), pa.int64()),
                "text": [f"a {words[x]} day number {i}" for i, x in enumerate(labels)],
                "label": labels,
                "reference": [f"a {words[x]} day" for x in labels],
                "group": ["x" if i < 20 else "y" for i in range(40)],
                "number": [float(i % 7) for i in range(40)],
            }
        ),
        directory / "part-0.parquet",
    )
    dataset = platform.datasets.create_arrow_dataset(directory, account=ACCOUNT, name="mixed")
    return platform.datasets.upload_arrow_dataset(dataset, directory).id


def _evaluate(platform: LocalPlatform, dataset: str, mock: Any, **kwargs: Any) -> str:
    service = platform.inferenceservices.create_mock(mock, account=ACCOUNT, kwargs=kwargs)
    evaluation = platform.evaluations.create(
        {
            "account": ACCOUNT,
            "dataset": dataset,
            "inferenceSession": {"inferenceService": service.id},
            "replications": 2,
        }
    )
    assert evaluation.status == Status.Complete, evaluation.message
    return evaluation.id


def test_every_builtin_gives_byte_identical_output_twice(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    dataset = _dataset(platform, tmp_path / "data")
    classified = _evaluate(platform, dataset, mocks.Classifier, seed=1, noise=0.3)
    other = _evaluate(platform, dataset, mocks.Classifier, seed=2, noise=0.3)
    written = _evaluate(platform, dataset, mocks.TextCompletion, seed=1)
    runs: dict[str, tuple[dict[str, str], dict[str, str]]] = {
        "classification.correct": ({"evaluation": classified, "dataset": dataset}, {}),
        "classification.metrics": ({"evaluation": classified, "dataset": dataset}, {}),
        "text.exact_match": ({"evaluation": written, "dataset": dataset}, {}),
        "text.contains": ({"evaluation": written}, {"substrings": "a"}),
        "text.regex": ({"evaluation": written}, {"pattern": "a.*y"}),
        "text.refused": ({"evaluation": written}, {}),
        "text.length": ({"evaluation": written}, {}),
        "text.metrics": ({"evaluation": written, "dataset": dataset}, {}),
        "fairness.metrics": (
            {"evaluation": classified, "dataset": dataset},
            {"group_field": "group", "positive_label": "positive"},
        ),
        "robustness.drop": ({"clean": classified, "perturbed": other, "dataset": dataset}, {}),
        "robustness.drop_with_perturbed_dataset": (
            {
                "clean": classified,
                "perturbed": other,
                "dataset": dataset,
                "perturbed_dataset": dataset,
            },
            {},
        ),
        "comparison.difference": ({"a": classified, "b": other, "dataset": dataset}, {}),
        "drift.psi": ({"baseline": dataset, "current": dataset}, {"column": "number"}),
    }
    assert set(runs) == set(builtin.BUILTINS), "a new built-in needs a run here"
    methods = builtin.register_all(platform, account=ACCOUNT)
    for name, (inputs, arguments) in runs.items():
        outputs = []
        for _ in range(2):
            measurement = platform.measurements.create(
                {
                    "account": ACCOUNT,
                    "method": methods[name].id,
                    "scope": {"evaluation": classified},
                    "inputs": [{"keyword": k, "entity": v} for k, v in inputs.items()],
                    "arguments": [{"keyword": k, "value": v} for k, v in arguments.items()],
                }
            )
            assert measurement.status == Status.Complete, (name, measurement.message)
            block = platform.provenance(measurement.id)
            assert block is not None
            outputs.append(block["output"]["files"])
        assert outputs[0] == outputs[1], f"{name} is not reproducible: {outputs}"
        assert outputs[0], name


@pytest.mark.parametrize("seed", ["0", "7"])
def test_a_different_seed_may_move_the_intervals_but_repeats_itself(
    platform: LocalPlatform, tmp_path: Path, seed: str
) -> None:
    dataset = _dataset(platform, tmp_path / "data")
    classified = _evaluate(platform, dataset, mocks.Classifier, seed=1, noise=0.3)
    method = builtin.register_all(platform, account=ACCOUNT)["classification.metrics"]
    digests = []
    for _ in range(2):
        measurement = platform.measurements.create(
            {
                "account": ACCOUNT,
                "method": method.id,
                "scope": {"evaluation": classified},
                "inputs": [
                    {"keyword": "evaluation", "entity": classified},
                    {"keyword": "dataset", "entity": dataset},
                ],
                "arguments": [{"keyword": "seed", "value": seed}],
            }
        )
        assert measurement.status == Status.Complete, measurement.message
        digests.append((platform.provenance(measurement.id) or {})["output"]["digest"])
    assert digests[0] == digests[1]
