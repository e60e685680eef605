"""Provenance (assay/provenance.py): a Dataset, an Evaluation and a Measurement record the
digests of what they were made from, and ``verify`` re-hashes the chain back to the data —
naming the entity, the artifact and both digests when one byte changed anywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.analysis.test_measurements import METRICS, method_request
from tests.conftest import ACCOUNT, ready_dataset

from assay import errors, provenance
from assay.cli import main
from assay.local import LocalPlatform, mocks
from assay.schema.status import Status


@pytest.fixture
def chain(platform: LocalPlatform, tmp_path: Path) -> dict[str, str]:
    """A Dataset, an Evaluation of a mock service over it, and a Measurement of that."""
    dataset = ready_dataset(platform, tmp_path / "data", rows=30)
    service = platform.inferenceservices.create_mock(
        mocks.TextCompletion, account=ACCOUNT, kwargs={"seed": 2}
    )
    evaluation = platform.evaluations.create(
        {
            "account": ACCOUNT,
            "dataset": dataset,
            "inferenceSession": {"inferenceService": service.id},
            "replications": 2,
            "client": {"batchSize": 10},
        }
    )
    assert evaluation.status == Status.Complete, evaluation.message
    package = tmp_path / "pkg"
    (package / "audit").mkdir(parents=True)
    (package / "audit" / "__init__.py").write_text("")
    (package / "audit" / "metrics.py").write_text(METRICS)
    module = platform.modules.create_package(package, account=ACCOUNT, name="audit")
    module_id = platform.modules.upload_package(module, package).id
    method = platform.methods.create(method_request(module_id, "lengths"))
    measurement = platform.measurements.create(
        {
            "account": ACCOUNT,
            "method": method.id,
            "scope": {"evaluation": evaluation.id},
            "inputs": [{"keyword": "evaluation", "entity": evaluation.id}],
        }
    )
    assert measurement.status == Status.Complete, measurement.message
    return {
        "dataset": dataset,
        "service": service.id,
        "evaluation": evaluation.id,
        "module": module_id,
        "method": method.id,
        "measurement": measurement.id,
    }


def _annotation(entity: Any) -> dict[str, Any]:
    block = provenance.from_annotations(entity.annotations, entity.id)
    assert block is not None, f"{entity.kind} {entity.id} has no {provenance.ANNOTATION}"
    return block


def test_each_result_records_what_it_was_made_from(
    platform: LocalPlatform, chain: dict[str, str]
) -> None:
    dataset = platform.provenance(chain["dataset"])
    evaluation = platform.provenance(chain["evaluation"])
    measurement = platform.provenance(chain["measurement"])
    assert dataset is not None and evaluation is not None and measurement is not None
    # the dataset: the digest of its data files
    files = dataset["output"]["files"]
    assert set(files) == {a.path for a in platform.datasets.require(chain["dataset"]).artifacts}
    assert dataset["output"]["digest"] == provenance.files_digest(files)
    # the evaluation: its parts, its dataset's digest, the system, the settings, the version
    parts = evaluation["output"]["files"]
    assert parts and all(p.startswith("data/") or p.startswith("errors/") for p in parts)
    assert evaluation["inputs"] == [
        {"kind": "Dataset", "id": chain["dataset"], "digest": dataset["output"]["digest"]}
    ]
    system = evaluation["system"]
    assert system["inferenceService"] == chain["service"] and system["runner"] == "mock"
    assert system["spec"].startswith("sha256:") and system["digest"].startswith("sha256:")
    assert evaluation["settings"]["replications"] == 2
    assert evaluation["settings"]["client"]["batchSize"] == 10
    assert evaluation["assay"] and evaluation["times"]["finished"]
    # the measurement: its output, its input's digest, the method's code (the Module's files)
    assert measurement["inputs"] == [
        {"kind": "Evaluation", "id": chain["evaluation"], "digest": evaluation["output"]["digest"]}
    ]
    method = measurement["method"]
    assert method["id"] == chain["method"]
    assert "audit/metrics.py" in method["modules"][chain["module"]]["files"]
    assert set(measurement["output"]["files"]) == {"data.parquet"}
    # every entity carries the summary (no file lists) as an annotation, as any reader sees
    for group, key in (
        (platform.datasets, "dataset"),
        (platform.evaluations, "evaluation"),
        (platform.measurements, "measurement"),
    ):
        entity = group.require(chain[key])
        assert _annotation(entity) == provenance.summary(platform.provenance(chain[key]) or {})
        assert "files" not in json.dumps(_annotation(entity))


def test_verify_holds_for_an_untouched_chain(
    platform: LocalPlatform, chain: dict[str, str]
) -> None:
    result = platform.verify(chain["measurement"])
    assert result.ok, str(result)
    checked = {(link.kind, link.id) for link in result.links}
    for kind, key in (
        ("Measurement", "measurement"),
        ("Evaluation", "evaluation"),
        ("Dataset", "dataset"),
        ("Module", "module"),
    ):
        assert (kind, chain[key]) in checked, str(result)
    # the evaluation's integrity check is one link of the chain
    assert any(link.what == "integrity" and link.ok for link in result.links), str(result)


@pytest.mark.parametrize(
    ("key", "kind"),
    [("dataset", "Dataset"), ("evaluation", "Evaluation"), ("measurement", "Measurement")],
)
def test_one_changed_byte_is_named(
    platform: LocalPlatform, chain: dict[str, str], key: str, kind: str
) -> None:
    id = chain[key]
    files = (platform.provenance(id) or {})["output"]["files"]
    path = sorted(files)[0]
    target = platform.storage_root / id / path
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    result = platform.verify(chain["measurement"])
    assert not result.ok
    [bad] = [link for link in result.mismatches if link.what == "file"]
    assert (bad.kind, bad.id, bad.artifact) == (kind, id, path)
    assert bad.expected == files[path] and bad.found not in (None, files[path])
    report = str(result)
    assert "MISMATCH" in report and path in report and files[path] in report


def test_a_changed_module_and_an_added_file_are_named(
    platform: LocalPlatform, chain: dict[str, str]
) -> None:
    metrics = platform.storage_root / chain["module"] / "audit" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\n# changed after the measurement\n")
    (platform.storage_root / chain["evaluation"] / "data" / "extra.parquet").write_bytes(b"x")
    result = platform.verify(chain["measurement"])
    details = {(link.kind, link.artifact): link for link in result.mismatches}
    assert ("Module", "audit/metrics.py") in details, str(result)
    assert "changed" in details["Module", "audit/metrics.py"].detail
    assert ("Evaluation", "data/extra.parquet") in details, str(result)


def test_verify_says_when_nothing_was_recorded_and_reads_no_unknown_version(
    platform: LocalPlatform, chain: dict[str, str]
) -> None:
    # a block of a version this Assay does not know is refused with a clear message
    id = chain["evaluation"]
    path = platform.storage_root / id / provenance.BLOCK_FILE
    block = json.loads(path.read_text())
    path.write_text(json.dumps({**block, "version": 99}))
    with pytest.raises(errors.ValidationError) as info:
        platform.provenance(id)
    assert "version 99" in str(info.value) and "reads version 1" in str(info.value)
    result = platform.verify(chain["measurement"])
    assert any("version 99" in link.detail for link in result.mismatches), str(result)
    # no block at all: said, not silently passed
    path.unlink()
    result = platform.verify(id)
    assert not result.ok and "no provenance recorded" in result.mismatches[0].detail


def test_the_command_reports_and_exits_with_the_verdict(
    platform: LocalPlatform, chain: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(platform.storage_root)
    platform.close()
    assert main(["verify", chain["measurement"], "--data", root]) == 0
    assert "links hold" in capsys.readouterr().out
    dataset = chain["dataset"]
    files = LocalPlatform(root, account=ACCOUNT)
    try:
        block = files.provenance(dataset) or {}
    finally:
        files.close()
    path = sorted(block["output"]["files"])[0]
    target = Path(root) / dataset / path
    target.write_bytes(target.read_bytes() + b"\0")
    assert main(["verify", chain["measurement"], "--data", root]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and dataset in out and path in out
    assert main(["verify", chain["measurement"], "--data", str(Path(root) / "nope")]) == 2
    assert "not an Assay platform" in capsys.readouterr().err


def test_a_remote_system_is_recorded_with_its_url_model_and_version(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    from assay.inference.fake_openai import FakeOpenAIServer
    from assay.inference.runners.openai import openai_interface

    dataset = ready_dataset(platform, tmp_path / "data", rows=12)
    with FakeOpenAIServer(api_key="sk-test", model="fake-model", seed=3) as server:
        platform.secrets.set("fake-openai", "sk-test")
        service = platform.inferenceservices.create(
            {
                "account": ACCOUNT,
                "name": "remote",
                "runner": {
                    "kind": "http",
                    "configuration": {
                        "url": f"{server.url}/v1",
                        "credential": {"secret": "fake-openai"},
                    },
                },
                "interface": openai_interface("fake-model").model_dump(by_alias=True),
            }
        )
        evaluation = platform.evaluations.create(
            {
                "account": ACCOUNT,
                "dataset": dataset,
                "inferenceSession": {"inferenceService": service.id},
            }
        )
        assert evaluation.status == Status.Complete, evaluation.message
    system = (platform.provenance(evaluation.id) or {})["system"]
    assert system["runner"] == "http" and system["url"] == f"{server.url}/v1"
    # what the service said it is, in its reply headers
    assert system["versions"] == {"X-Model-Version": ["fake-model-seed3"]}
    assert platform.verify(evaluation.id).ok


def test_a_summary_that_differs_from_the_block_is_named(
    platform: LocalPlatform, chain: dict[str, str]
) -> None:
    id = chain["evaluation"]
    forged = json.dumps({**provenance.summary(platform.provenance(id) or {}), "assay": "9"})

    def mutate(doc: dict[str, Any]) -> dict[str, Any]:
        notes = [n for n in doc["annotations"] if n["key"] != provenance.ANNOTATION]
        doc["annotations"] = [*notes, {"key": provenance.ANNOTATION, "value": forged}]
        return doc

    platform.core.store.update(id, mutate)
    result = platform.verify(id)
    assert any(
        link.what == "recorded" and "annotation" in link.detail for link in result.mismatches
    ), str(result)
