"""``platform.pipelines``: pipelines with their inference log — logs, exports, the failure
log, logs → Dataset → Measurement, and persistence across a restart of the platform."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import ACCOUNT, text_metrics_request

from assay import errors
from assay.analysis.builtin import text
from assay.local import LocalPlatform, mocks
from assay.pipelines import MoreLogRecordsWarning, PipelineStepError
from assay.schema.status import Status


def test_logged_pipeline_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "platform"
    with LocalPlatform(storage_root=root, account=ACCOUNT) as platform:
        create = platform.inferenceservices.create_mock
        service = create(mocks.TextCompletion, account=ACCOUNT, name="writer", kwargs={"seed": 1})
        faulty = create(
            mocks.Faulty, account=ACCOUNT, name="broken", kwargs={"error_rate": 1.0, "seed": 1}
        )
        pipeline = platform.pipelines.create("assistant")
        assert platform.pipelines.create("assistant") is pipeline
        pipeline.add_model_step(service).add_validations(short="in.text == 'q0'")
        pipeline.deploy()
        pipeline.infer([{"text": f"q{i}"} for i in range(30)])

        logs = pipeline.logs()
        assert len(logs) == 30 and {"time", "in.text", "anomaly.count"} <= set(logs.columns)
        with pytest.warns(MoreLogRecordsWarning, match="10 log records returned"):
            newest = pipeline.logs(limit=10, arrow=True)
        assert newest.num_rows == 10
        flagged = pipeline.logs(valid=False, arrow=True)
        assert flagged.column("in.text").to_pylist() == ["q0"]
        only_inputs = pipeline.logs(dataset=["time", "in"], arrow=True)
        assert set(only_inputs.schema.names) == {"time", "in.text"}

        exported = pipeline.export_logs(tmp_path / "exported")
        lines = [
            json.loads(line)
            for path in sorted((tmp_path / "exported").iterdir())
            for line in path.read_text().splitlines()
        ]
        assert exported.records == len(lines) == 30
        assert {line["in.text"] for line in lines} == {f"q{i}" for i in range(30)}

        # a failing step: an error naming the step, and a record in the failure log
        pipeline.replace_with_model_step(0, faulty)
        pipeline.deploy()
        with pytest.raises(PipelineStepError, match="step 0"):
            pipeline.infer({"text": "doomed"})
        failures = pipeline.logs(failures=True, arrow=True)
        assert failures.column("in.text").to_pylist() == ["doomed"]
        assert pipeline.log_counters()["failed"] == 1
        assert pipeline.log_counters()["dropped"] == 0

        # logged traffic becomes a Dataset and an Evaluation that Methods can audit
        dataset, evaluation = platform.datasets.create_from_pipeline_logs(
            pipeline, name="assistant traffic"
        )
        assert dataset.status == Status.Ready and evaluation.status == Status.Complete
        method = text.METRICS.register(platform, account=ACCOUNT)
        measurement = platform.measurements.create(
            text_metrics_request(ACCOUNT, method.id, evaluation.id, dataset.id, "text")
        )
        assert measurement.status == Status.Complete, measurement.message

    # after a restart: the versions and every logged record are still there
    with LocalPlatform(storage_root=root, account=ACCOUNT) as platform:
        pipeline = platform.pipelines.get("assistant")
        assert [v.version for v in pipeline.versions()] == [1, 2]
        assert len(pipeline.logs(limit=None)) == 30
        with pytest.raises(errors.NotFoundError, match="was ever deployed"):
            platform.pipelines.get("nothing")


def test_create_from_pipeline_logs_needs_a_pipeline_with_a_log(platform: LocalPlatform) -> None:
    with pytest.raises(errors.ValidationError, match="object has no inference log"):
        platform.datasets.create_from_pipeline_logs(object())
