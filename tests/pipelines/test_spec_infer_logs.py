"""``infer`` / ``infer_from_file`` and ``logs`` / ``export_logs`` as the pipeline document
(``/work/shared/reference/wallaroo-pipeline.txt``) describes them: a timeout enforced while a
step runs (default 15 s), ``dataset`` / ``dataset_exclude`` / ``dataset_separator``,
``valid=False`` with the failed inferences, and exports that count the files already in
their folder and resume by record sequence, never skipping or repeating a record."""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from tests.conftest import ACCOUNT

from assay import errors
from assay.local import LocalPlatform, mocks
from assay.pipelines import Pipeline, PipelineStepError
from assay.pipelines.execution import Runtime
from assay.pipelines.group import LoggedPipeline
from assay.pipelines.log import ExportResult, InferenceLog

pd: Any = importlib.import_module("pandas")  # no type stubs installed


class Sleepy(mocks.TextCompletion):
    """A TextCompletion that waits ``sleep`` seconds before each answer (or until
    :attr:`release` is set); :attr:`answered` lists the prompts it answered, after the wait.
    Class attributes, shared by every instance (the platform makes the instance)."""

    release = threading.Event()
    answered: list[str] = []

    def __init__(self, *, sleep: float = 0.0, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.sleep = sleep

    def answer(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        Sleepy.release.wait(self.sleep)
        result = super().answer(request)
        Sleepy.answered.append(request["text"])
        return result


@pytest.fixture(autouse=True)
def _sleepy() -> Iterator[None]:
    Sleepy.release = threading.Event()
    Sleepy.answered = []
    yield
    Sleepy.release.set()  # let a step thread still waiting finish


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _writer(platform: LocalPlatform) -> Any:
    create = platform.inferenceservices.create_mock
    return create(mocks.TextCompletion, account=ACCOUNT, name="writer", kwargs={"seed": 1})


def _faulty(platform: LocalPlatform) -> Any:
    create = platform.inferenceservices.create_mock
    return create(
        mocks.Faulty, account=ACCOUNT, name="broken", kwargs={"error_rate": 1.0, "seed": 1}
    )


def _flagging(platform: LocalPlatform, name: str = "spec") -> LoggedPipeline:
    """A deployed pipeline over ``writer`` whose check ``bad`` flags the text "bad"."""
    pipeline: LoggedPipeline = platform.pipelines.create(name)
    pipeline.add_model_step(_writer(platform)).add_validations(bad="in.text == 'bad'")
    pipeline.deploy()
    return pipeline


def _lines(result: ExportResult) -> list[dict[str, Any]]:
    return [json.loads(line) for path in result.files for line in path.read_text().splitlines()]


# -- infer: the timeout --------------------------------------------------------------------------


def test_a_step_still_running_at_the_timeout_is_given_up_and_logged_as_failed(
    platform: LocalPlatform,
) -> None:
    create = platform.inferenceservices.create_mock
    slow = create(Sleepy, account=ACCOUNT, name="sleepy", kwargs={"sleep": 60.0, "seed": 1})
    pipeline = platform.pipelines.create("slow")
    pipeline.add_model_step(_writer(platform)).add_model_step(slow).deploy()

    began = time.monotonic()
    expected = (
        r"step 1: model sleepy failed for 2 of 2 input\(s\): step 1 \(model sleepy\) timed out: "
        r"no answer within the inference's timeout of 0\.5 s"
    )
    with pytest.raises(PipelineStepError, match=expected) as info:
        pipeline.infer([{"text": "a"}, {"text": "b"}], timeout=0.5)
    assert time.monotonic() - began < 10  # at the timeout, not after the step's 60 s
    assert info.value.step == 1 and Sleepy.answered == []

    failed = pipeline.logs(failures=True, arrow=True, dataset=["*", "metadata"])
    assert sorted(failed.column("in.text").to_pylist()) == ["a", "b"]
    for error in failed.column("error").to_pylist():
        assert "step 1 (model sleepy) timed out" in error and "timeout of 0.5 s" in error
    assert failed.column("metadata.error_step").to_pylist() == [1, 1]
    assert failed.column("metadata.error_step_kind").to_pylist() == ["model", "model"]

    # the late answer comes and is discarded: nothing is logged as answered
    Sleepy.release.set()
    wait_for(lambda: len(Sleepy.answered) == 2)  # the second step reads the first's output
    assert sorted(text[0] for text in Sleepy.answered) == ["a", "b"]
    assert pipeline.logs(arrow=True).num_rows == 0
    counters = pipeline.log_counters()
    assert counters["written"] == 0 and counters["failed"] == 2
    # the pipeline answers the next call as usual
    assert pipeline.infer({"text": "c"}, timeout=30)["in.text"] == "c"


def test_the_timeout_defaults_to_15_seconds(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for method in (Pipeline.infer, Pipeline.infer_from_file, Pipeline.parallel_infer):
        assert inspect.signature(method).parameters["timeout"].default == 15
    seen: list[float] = []
    run = Runtime.run

    def spy(self: Runtime, rows: Any, *, timeout: float, concurrency: int = 1) -> Any:
        seen.append(timeout)
        return run(self, rows, timeout=timeout, concurrency=concurrency)

    monkeypatch.setattr(Runtime, "run", spy)
    pipeline = platform.pipelines.create("default")
    pipeline.add_model_step(_writer(platform)).deploy()
    feather.write_feather(pa.table({"text": ["x"]}), tmp_path / "in.arrow")
    pipeline.infer({"text": "x"})
    pipeline.infer({"text": "x"}, None)  # the document's Optional: None is the default
    pipeline.infer_from_file(tmp_path / "in.arrow")
    pipeline.infer({"text": "x"}, timeout=2.5)
    assert seen == [15.0, 15.0, 15.0, 2.5]
    with pytest.raises(errors.ValidationError, match="timeout must be a positive number"):
        pipeline.infer({"text": "x"}, timeout=0)


# -- infer: dataset, dataset_exclude, dataset_separator ------------------------------------------


def test_infer_returns_the_groups_asked_for_flattened_or_nested(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    pipeline = _flagging(platform)
    record = pipeline.infer({"text": "bad"})
    assert {name.split(".")[0] for name in record} == {"time", "in", "out", "anomaly"}
    assert record["anomaly.bad"] is True and record["anomaly.count"] == 1
    # the document's default, spelled out; check_failures is the anomaly.* columns
    spelled = pipeline.infer({"text": "bad"}, dataset=["time", "in", "out", "check_failures"])
    assert list(spelled) == list(record)
    # metadata only when asked for
    full = pipeline.infer({"text": "bad"}, dataset=["*", "metadata"])
    assert full["metadata.pipeline"] == "spec" and full["metadata.pipeline_version"] == 1
    assert {n for n in full if not n.startswith("metadata.")} == set(record)
    assert list(pipeline.infer({"text": "bad"}, metadata=True)) == list(full)
    excluded = pipeline.infer({"text": "bad"}, 15, ["*", "metadata"], ["metadata"])
    assert list(excluded) == list(record)
    assert list(pipeline.infer({"text": "x"}, dataset_exclude=["out", "check_failures"])) == [
        "time",
        "in.text",
    ]
    assert list(pipeline.infer({"text": "x"}, dataset=["in.text", "anomaly.count"])) == [
        "in.text",
        "anomaly.count",
    ]
    with pytest.raises(errors.ValidationError, match="selects no column"):
        pipeline.infer({"text": "x"}, dataset=["outputs"])

    # dataset_separator: None nests, another string joins the flattened names
    nested = pipeline.infer({"text": "bad"}, dataset_separator=None)
    assert list(nested) == ["time", "in", "out", "anomaly"]
    assert nested["in"] == {"text": "bad"}
    assert nested["out"]["text"] == record["out.text"]
    assert nested["out"]["1"] == {"text": record["out.1.text"]}  # the second output
    assert nested["anomaly"] == {"count": 1, "bad": True}
    slashed = pipeline.infer({"text": "bad"}, dataset=["in", "out/1"], dataset_separator="/")
    assert list(slashed) == ["in/text", "out/1/text"]
    with pytest.raises(errors.ValidationError, match="dataset_separator"):
        pipeline.infer({"text": "x"}, dataset_separator="")

    # the kind of the input decides the kind of the answer
    frame = pipeline.infer(pd.DataFrame({"text": ["a", "b"]}), dataset=["time", "out"])
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["time", "out.text", "out.1.text"]
    table = pipeline.infer(pa.table({"text": ["a", "b"]}), dataset_separator=None)
    assert isinstance(table, pa.Table) and table.column_names == ["time", "in", "out", "anomaly"]
    assert pa.types.is_struct(table.schema.field("in").type)
    assert table.column("in").to_pylist() == [{"text": "a"}, {"text": "b"}]
    nested_frame = pipeline.infer(pd.DataFrame({"text": ["a"]}), dataset_separator=None)
    assert nested_frame["in"][0] == {"text": "a"}

    # infer_from_file takes the same arguments, in the document's order
    feather.write_feather(pa.table({"text": ["a", "bad"]}), tmp_path / "in.arrow")
    from_file = pipeline.infer_from_file(tmp_path / "in.arrow", 30, ["time", "in"], None, None)
    assert isinstance(from_file, pa.Table) and from_file.column_names == ["time", "in"]
    (tmp_path / "in.json").write_text(json.dumps([{"text": "bad"}]))
    rows = pipeline.infer_from_file(tmp_path / "in.json", dataset=["check_failures"])
    assert rows == [{"anomaly.count": 1, "anomaly.bad": True}]


# -- logs ----------------------------------------------------------------------------------------


def test_logs_groups_metadata_on_request_valid_false_and_nesting(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    pipeline = _flagging(platform, "logged")
    pipeline.infer([{"text": "ok"}, {"text": "bad"}])
    pipeline.replace_with_model_step(0, _faulty(platform)).deploy()
    with pytest.raises(PipelineStepError, match="step 0"):
        pipeline.infer({"text": "doomed"})

    logs = pipeline.logs(arrow=True)
    assert {n.split(".")[0] for n in logs.column_names} == {"time", "in", "out", "anomaly"}
    assert sorted(logs.column("in.text").to_pylist()) == ["bad", "ok"]  # no failure
    spelled = pipeline.logs(arrow=True, dataset=["time", "in", "out", "check_failures"])
    assert spelled.column_names == logs.column_names
    with_metadata = pipeline.logs(arrow=True, dataset=["*", "metadata"])
    assert with_metadata.column_names == [
        *logs.column_names,
        *(n for n in with_metadata.column_names if n.startswith("metadata.")),
    ]
    assert set(with_metadata.column("metadata.pipeline_version").to_pylist()) == {1}
    only = pipeline.logs(arrow=True, dataset=["metadata"])
    assert only.num_columns and all(n.startswith("metadata.") for n in only.column_names)
    dropped = pipeline.logs(arrow=True, dataset=["*", "metadata"], dataset_exclude=["metadata"])
    assert dropped.column_names == logs.column_names

    # valid=False: the flagged inferences and the failed ones, with their error
    invalid = pipeline.logs(arrow=True, valid=False)
    texts = invalid.column("in.text").to_pylist()
    assert sorted(texts) == ["bad", "doomed"]
    errors_ = dict(zip(texts, invalid.column("error").to_pylist(), strict=True))
    assert errors_["bad"] is None and "TransientServiceError" in errors_["doomed"]
    assert pipeline.logs(arrow=True, valid=True).column("in.text").to_pylist() == ["ok"]
    failed_only = pipeline.logs(arrow=True, failures=True, valid=False)
    assert failed_only.column("in.text").to_pylist() == ["doomed"]

    # None nests (structs), "." flattens
    nested = pipeline.logs(arrow=True, dataset_separator=None)
    assert nested.column_names == ["time", "in", "out", "anomaly"]
    assert pa.types.is_struct(nested.schema.field("anomaly").type)
    assert sorted(r["text"] for r in nested.column("in").to_pylist()) == ["bad", "ok"]
    assert pipeline.logs(arrow=True, dataset_separator=".").equals(logs)
    frame = pipeline.logs(dataset_separator=None, dataset=["in"])
    assert isinstance(frame, pd.DataFrame) and sorted(r["text"] for r in frame["in"]) == [
        "bad",
        "ok",
    ]

    # export_logs: the same groups, metadata on request, nested lines
    exported = _lines(pipeline.export_logs(tmp_path / "flat"))
    assert [line["in.text"] for line in exported] == ["ok", "bad"]
    assert not any(k.startswith("metadata.") for line in exported for k in line)
    asked = _lines(pipeline.export_logs(tmp_path / "meta", dataset=["in", "metadata"]))
    assert {k.split(".")[0] for line in asked for k in line} == {"in", "metadata"}
    nested_lines = _lines(pipeline.export_logs(tmp_path / "nested", dataset_separator=None))
    assert nested_lines[1]["in"] == {"text": "bad"}
    assert nested_lines[1]["anomaly"] == {"count": 1, "bad": True}


# -- export_logs: the size limit and resuming -----------------------------------------------------


def test_data_size_limit_counts_the_files_already_in_the_directory(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    pipeline = _flagging(platform, "sized")
    pipeline.infer([{"text": f"q{i}"} for i in range(50)])
    whole = pipeline.export_logs(tmp_path / "whole")
    assert whole.complete and whole.records == 50 and whole.existing_bytes == 0

    target = tmp_path / "target"
    (target / "older").mkdir(parents=True)
    (target / "notes.bin").write_bytes(b"x" * (whole.bytes // 2))
    (target / "older" / "part.jsonl").write_bytes(b"y" * 100)
    result = pipeline.export_logs(target, data_size_limit=whole.bytes)
    assert not result.complete and 0 < result.records < 50
    assert result.existing_bytes == whole.bytes // 2 + 100
    on_disk = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    assert on_disk <= whole.bytes
    assert "already there" in result.message
    assert f"start_sequence={result.records}" in result.message

    full = tmp_path / "full"
    full.mkdir()
    (full / "big.bin").write_bytes(b"z" * whole.bytes)
    nothing = pipeline.export_logs(full, data_size_limit=whole.bytes)
    assert nothing.records == 0 and not nothing.complete and nothing.files == []
    assert nothing.resume == {"start_sequence": 0}


def test_an_interrupted_export_resumes_with_every_record_exactly_once(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    pipeline = platform.pipelines.create("bulk")
    pipeline.add_model_step(_writer(platform)).deploy()
    pipeline.infer([{"text": f"r{i}"} for i in range(1000)])  # one call: one time for all
    times = pipeline.logs(arrow=True, limit=None, dataset=["time"]).column("time")
    assert len(times) == 1000 and len(times.unique()) == 1
    whole = pipeline.export_logs(tmp_path / "whole")
    assert whole.records == 1000 and whole.resume == {"start_sequence": 1000}

    seen: list[str] = []
    resume: dict[str, Any] = {}
    parts: list[ExportResult] = []
    while True:
        part = pipeline.export_logs(
            tmp_path / f"part-{len(parts)}", data_size_limit=whole.bytes // 3, **resume
        )
        parts.append(part)
        seen += [line["in.text"] for line in _lines(part)]
        if part.complete:
            break
        assert part.records > 0 and part.next_sequence == len(seen)
        assert f"export again with start_sequence={len(seen)} to go on" in part.message
        resume = part.resume
        assert len(parts) < 10, "the export does not get on"
    assert len(parts) >= 3  # stopped at least twice, mid-way through the one time
    assert seen == [f"r{i}" for i in range(1000)]  # every record once, in log order

    # the complete export says where the records logged after it start
    pipeline.infer([{"text": "later"}, {"text": "later still"}])
    later = pipeline.export_logs(tmp_path / "later", **parts[-1].resume)
    assert [line["in.text"] for line in _lines(later)] == ["later", "later still"]
    assert later.resume == {"start_sequence": 1002}
    # limit stops by records, and resumes as well
    first = pipeline.export_logs(tmp_path / "limit-a", limit=600)
    rest = pipeline.export_logs(tmp_path / "limit-b", **first.resume)
    assert first.resume == {"start_sequence": 600}
    assert len(_lines(first)) + len(_lines(rest)) == 1002
    assert _lines(rest)[0]["in.text"] == "r600"
    # the document's time window still selects
    moment = times[0].as_py()
    window = pipeline.export_logs(
        tmp_path / "window",
        start_datetime=moment,
        end_datetime=moment + dt.timedelta(microseconds=1),
    )
    assert window.complete and window.records == 1000
    with pytest.raises(errors.ValidationError, match="start_sequence"):
        pipeline.export_logs(tmp_path / "bad", start_sequence=cast(Any, "7"))


def test_export_valid_false_adds_the_failure_log_and_resumes_in_both(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    pipeline = _flagging(platform, "both")
    pipeline.infer([{"text": "ok"}, {"text": "bad"}, {"text": "bad"}])
    pipeline.replace_with_model_step(0, _faulty(platform)).deploy()
    for _ in range(2):
        with pytest.raises(PipelineStepError):
            pipeline.infer({"text": "doomed"})

    first = pipeline.export_logs(tmp_path / "a", valid=False, limit=3)
    assert [line["in.text"] for line in _lines(first)] == ["bad", "bad", "doomed"]
    # one sequence for records and failures: ok 0, bad 1, bad 2, then doomed 3 and 4
    assert first.resume == {"start_sequence": 3, "start_failure_sequence": 4}
    assert "start_sequence=3, start_failure_sequence=4" in first.message
    rest = pipeline.export_logs(tmp_path / "b", valid=False, **first.resume)
    lines = _lines(rest)
    assert [line["in.text"] for line in lines] == ["doomed"] and rest.complete
    assert "TransientServiceError" in lines[0]["error"]
    with pytest.raises(errors.ValidationError, match="start_failure_sequence goes with"):
        pipeline.export_logs(tmp_path / "c", start_failure_sequence=1)


def test_records_logged_before_sequence_numbers_are_resumed_exactly_too(tmp_path: Path) -> None:
    """A segment written before records had a ``seq`` numbers its records below 0, so an
    export through it resumes exactly as through the others."""
    folder = tmp_path / "old"
    (folder / "log").mkdir(parents=True)
    moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    stamp = pa.timestamp("us", tz="UTC")
    old = pa.table({"time": pa.array([moment] * 30, stamp), "in.x": pa.array(range(30))})
    pq.write_table(old, folder / "log" / "segment-000000000000.parquet")
    with InferenceLog(folder) as log:
        log.append(pa.table({"time": pa.array([moment] * 10, stamp), "in.x": range(30, 40)}))
        seen: list[int] = []
        resume: dict[str, Any] = {}
        results: list[ExportResult] = []
        while not results or not results[-1].complete:
            assert len(results) < 10, "the export does not get on"
            results.append(log.export(tmp_path / f"part-{len(results)}", limit=7, **resume))
            seen += [line["in.x"] for line in _lines(results[-1])]
            resume = results[-1].resume
    assert results[0].resume == {"start_sequence": -23}
    assert seen == list(range(40))
