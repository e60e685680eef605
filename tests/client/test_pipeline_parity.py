"""A pipeline through the server answers as the embedded platform's does: the same deployed
pipeline and the same log, read with ``LoggedPipeline`` (the live server's own platform core,
in this process) and with ``RemotePipeline`` (over HTTP), give the same records for ``infer``
with ``dataset`` / ``dataset_exclude`` / ``dataset_separator``, the same ``logs`` (with
``valid=False``, nested columns), and the same exports, resumed by ``start_sequence``
(and ``start_failure_sequence``) with every record exactly once. The local checks of these
arguments are ``tests/pipelines/test_spec_infer_logs.py``."""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pytest
from tests.client.conftest import ALICE, LiveServer

from assay import errors
from assay.client import Client
from assay.client._pipelines import RemotePipeline
from assay.local import mocks
from assay.pipelines import LoggedPipeline, PipelineStepError
from assay.pipelines.group import Pipelines as LocalPipelines
from assay.pipelines.log import ExportResult

pd: Any = importlib.import_module("pandas")  # no type stubs installed

#: Values that differ between two inferences of the same rows.
_VOLATILE = {"time", "elapsed_ms", "step_elapsed_ms"}


@pytest.fixture
def both(alice: Client, live_server: LiveServer) -> Iterator[tuple[LoggedPipeline, RemotePipeline]]:
    """A deployed pipeline of alice over a seeded ``writer`` (its answer depends on the input
    alone) whose check ``bad`` flags the text "bad": embedded and over the server."""
    name = f"parity-{uuid.uuid4().hex[:8]}"  # the live server serves the whole module set
    create = alice.inferenceservices.create_mock
    writer = create(mocks.TextCompletion, account=ALICE, name="writer", kwargs={"seed": 1})
    remote = alice.pipelines.create(name)
    remote.add_model_step(writer).add_validations(bad="in.text == 'bad'")
    remote.deploy()
    group = LocalPipelines(live_server.core)
    try:
        yield group.get(name, account=ALICE), remote
    finally:
        remote.undeploy()
        group.close()


def _stable(value: Any) -> Any:
    """``value`` (a record, or records) without what differs between two inferences."""
    if isinstance(value, dict):
        return {
            k: _stable(v)
            for k, v in value.items()
            if k.rsplit(".", 1)[-1] not in _VOLATILE  # time, metadata.elapsed_ms...
        }
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _comparable(answer: Any) -> Any:
    """An ``infer`` answer as plain values, keeping its kind, column order and types."""
    if isinstance(answer, pa.Table):
        return "table", answer.schema, _stable(answer.to_pylist())
    if isinstance(answer, pd.DataFrame):
        dtypes = [str(t) for t in answer.dtypes]
        return "frame", list(answer.columns), dtypes, _stable(answer.to_dict("records"))
    if isinstance(answer, dict):
        return "dict", list(answer), _stable(answer)
    return "list", [list(r) for r in answer], _stable(answer)


def _lines(result: ExportResult) -> list[dict[str, Any]]:
    return [json.loads(line) for path in result.files for line in path.read_text().splitlines()]


def _same_export(
    local: ExportResult, remote: ExportResult, local_dir: Path, remote_dir: Path
) -> None:
    """The two exports wrote the same files and say the same (their folders aside)."""
    assert [p.read_bytes() for p in remote.files] == [p.read_bytes() for p in local.files]
    assert [p.name for p in remote.files] == [p.name for p in local.files]
    for field in ("records", "bytes", "last_time", "complete", "resume", "existing_bytes"):
        assert getattr(remote, field) == getattr(local, field), field
    assert remote.next_sequence == local.next_sequence
    assert remote.message.replace(str(remote_dir), "<dir>") == local.message.replace(
        str(local_dir), "<dir>"
    )


def _fail_once(remote: RemotePipeline, alice: Client, text: str) -> None:
    """Log a failed inference of ``text`` (a version whose step always fails), then go back
    to version 1."""
    broken = alice.inferenceservices.create_mock(
        mocks.Faulty, account=ALICE, name="broken", kwargs={"error_rate": 1.0, "seed": 1}
    )
    remote.replace_with_model_step(0, broken).deploy()
    with pytest.raises(PipelineStepError, match="step 0"):
        remote.infer({"text": text})
    remote.deploy(version=1)


# -- infer ---------------------------------------------------------------------------------------


def test_infer_gives_the_same_records_for_every_dataset_argument(
    both: tuple[LoggedPipeline, RemotePipeline], tmp_path: Path
) -> None:
    local, remote = both
    cases: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((), {}),
        ((), {"dataset": ["time", "in", "out", "check_failures"]}),
        ((), {"dataset": ["*", "metadata"]}),
        ((), {"metadata": True}),
        ((15, ["*", "metadata"], ["metadata"]), {}),  # positional, in the document's order
        ((), {"dataset_exclude": ["out", "check_failures"]}),
        ((), {"dataset": ["in.text", "anomaly.count"]}),
        ((), {"dataset": "check_failures"}),  # one group as a str
        ((), {"dataset_separator": None}),  # nested: structs, dicts in Python and pandas
        ((), {"dataset_separator": None, "dataset": ["in", "anomaly"]}),
        ((), {"dataset": ["in", "out/1"], "dataset_separator": "/"}),
        ((None,), {"dataset_separator": ["."]}),  # timeout None is the default
    ]
    inputs: list[Any] = [
        {"text": "bad"},
        [{"text": "ok"}, {"text": "bad"}],
        pa.table({"text": ["ok", "bad"]}),
        pd.DataFrame({"text": ["bad", "ok"]}),
    ]
    for args, kwargs in cases:
        for data in inputs:
            mine = local.infer(data, *args, **kwargs)
            theirs = remote.infer(data, *args, **kwargs)
            assert _comparable(theirs) == _comparable(mine), (args, kwargs, type(data))

    # nested records are structs over the server too
    nested = remote.infer(pa.table({"text": ["bad"]}), dataset_separator=None)
    assert nested.column_names == ["time", "in", "out", "anomaly"]
    assert pa.types.is_struct(nested.schema.field("in").type)
    assert nested.column("anomaly").to_pylist() == [{"count": 1, "bad": True}]
    assert remote.infer({"text": "bad"}, dataset_separator=None)["in"] == {"text": "bad"}

    # parallel_infer, infer_table and infer_from_file take the same arguments
    rows = [{"text": f"p{i}"} for i in range(5)] + [{"text": "bad"}]
    selection: dict[str, Any] = {"dataset": ["in", "anomaly"], "dataset_separator": None}
    assert _comparable(remote.parallel_infer(rows, 3, **selection)) == _comparable(
        local.parallel_infer(rows, 3, **selection)
    )
    assert _comparable(remote.infer_table(rows, **selection)) == _comparable(
        local.infer_table(rows, **selection)
    )
    (tmp_path / "in.jsonl").write_text('{"text": "bad"}\n{"text": "f1"}\n')
    from_file = (tmp_path / "in.jsonl", 30, ["time", "in"], None, None)
    assert _comparable(remote.infer_from_file(*from_file)) == _comparable(
        local.infer_from_file(*from_file)
    )

    # refused alike: a dataset that selects nothing (after the rows ran, as locally), an
    # empty separator (before anything runs)
    for pipeline in (local, remote):
        with pytest.raises(errors.ValidationError, match="selects no column"):
            pipeline.infer({"text": "x"}, dataset=["outputs"])
        with pytest.raises(errors.ValidationError, match="dataset_separator"):
            pipeline.infer({"text": "x"}, dataset_separator="")
    assert local.logs(arrow=True, limit=None).equals(remote.logs(arrow=True, limit=None))


# -- logs ----------------------------------------------------------------------------------------


def test_logs_give_the_same_records_valid_false_and_nested(
    both: tuple[LoggedPipeline, RemotePipeline], alice: Client
) -> None:
    local, remote = both
    remote.infer([{"text": "ok"}, {"text": "bad"}])
    local.infer({"text": "bad"})
    _fail_once(remote, alice, "doomed")

    selections: list[dict[str, Any]] = [
        {},
        {"valid": False},
        {"valid": False, "dataset_separator": None},
        {"valid": True},
        {"dataset_separator": None},
        {"dataset_separator": None, "dataset": ["in"]},
        {"dataset": ["*", "metadata"]},
        {"dataset": ["*", "metadata"], "dataset_exclude": ["metadata"]},
        {"dataset": "in", "dataset_separator": "/"},
        {"failures": True},
        {"failures": True, "valid": False, "dataset_separator": None},
    ]
    for selection in selections:
        mine = local.logs(limit=None, arrow=True, **selection)
        theirs = remote.logs(limit=None, arrow=True, **selection)
        assert theirs.schema == mine.schema, selection
        assert theirs.equals(mine), selection
        frame, remote_frame = (p.logs(limit=None, **selection) for p in (local, remote))
        pd.testing.assert_frame_equal(remote_frame, frame)  # nulls (NaN) compare equal here

    # the flagged inferences and the failed one, with its error, nested
    invalid = remote.logs(limit=None, arrow=True, valid=False, dataset_separator=None)
    assert invalid.column_names == ["time", "in", "out", "anomaly", "error"]
    texts = [r["text"] for r in invalid.column("in").to_pylist()]
    assert sorted(texts) == ["bad", "bad", "doomed"]
    errors_ = dict(zip(texts, invalid.column("error").to_pylist(), strict=True))
    assert "TransientServiceError" in errors_["doomed"]
    with pytest.raises(errors.ValidationError, match="selects no column"):
        remote.logs(arrow=True, dataset=["outputs"])


# -- export_logs ---------------------------------------------------------------------------------


def test_an_export_resumed_by_start_sequence_gives_every_record_once(
    both: tuple[LoggedPipeline, RemotePipeline], tmp_path: Path
) -> None:
    local, remote = both
    remote.infer([{"text": f"r{i}"} for i in range(300)])  # one call: one time for all
    whole = remote.export_logs(tmp_path / "whole")
    assert whole.complete and whole.records == 300 and whole.resume == {"start_sequence": 300}
    here = tmp_path / "whole-local"
    _same_export(local.export_logs(here), whole, here, tmp_path / "whole")

    seen: list[str] = []
    resume: dict[str, Any] = {}
    parts = 0
    while True:
        mine_dir, theirs_dir = tmp_path / f"local-{parts}", tmp_path / f"remote-{parts}"
        limits: dict[str, Any] = {"data_size_limit": whole.bytes // 3}
        mine = local.export_logs(mine_dir, **limits, **resume)
        theirs = remote.export_logs(theirs_dir, **limits, **resume)
        _same_export(mine, theirs, mine_dir, theirs_dir)
        parts += 1
        seen += [line["in.text"] for line in _lines(theirs)]
        if theirs.complete:
            break
        assert theirs.records > 0 and theirs.next_sequence == len(seen)
        assert f"export again with start_sequence={len(seen)} to go on" in theirs.message
        resume = theirs.resume
        assert parts < 10, "the export does not get on"
    assert parts >= 3  # stopped at least twice, within the one time
    assert seen == [f"r{i}" for i in range(300)]  # every record once, in log order
    assert theirs.resume == {"start_sequence": 300}

    # the complete export's resume gives exactly the records logged since
    remote.infer([{"text": "later"}, {"text": "later still"}])
    later = remote.export_logs(tmp_path / "later", **theirs.resume)
    assert [line["in.text"] for line in _lines(later)] == ["later", "later still"]
    assert later.resume == {"start_sequence": 302}
    # limit stops by records and resumes, positionally as locally
    first = remote.export_logs(tmp_path / "limit-a", None, "100 MiB", 120)
    rest = remote.export_logs(tmp_path / "limit-b", **first.resume)
    assert first.resume == {"start_sequence": 120} and not first.complete
    assert len(_lines(first)) + len(_lines(rest)) == 302 and _lines(rest)[0]["in.text"] == "r120"

    # data_size_limit counts the files already in the folder, as locally
    for side in ("local", "remote"):
        (tmp_path / f"full-{side}").mkdir()
        (tmp_path / f"full-{side}" / "old.bin").write_bytes(b"x" * (whole.bytes // 2))
    _same_export(
        local.export_logs(tmp_path / "full-local", data_size_limit=whole.bytes),
        remote.export_logs(tmp_path / "full-remote", data_size_limit=whole.bytes),
        tmp_path / "full-local",
        tmp_path / "full-remote",
    )
    for pipeline in (local, remote):
        with pytest.raises(errors.ValidationError, match="start_sequence"):
            pipeline.export_logs(tmp_path / "bad", start_sequence=cast(Any, "7"))
        with pytest.raises(errors.ValidationError, match="start_failure_sequence goes with"):
            pipeline.export_logs(tmp_path / "bad", start_failure_sequence=1)


def test_an_export_of_valid_false_resumes_in_both_logs_and_nests(
    both: tuple[LoggedPipeline, RemotePipeline], alice: Client, tmp_path: Path
) -> None:
    local, remote = both
    remote.infer([{"text": "ok"}, {"text": "bad"}, {"text": "bad"}])
    _fail_once(remote, alice, "doomed")
    _fail_once(remote, alice, "doomed again")

    options: dict[str, Any] = {"valid": False, "limit": 3}
    mine = local.export_logs(tmp_path / "a-local", **options)
    first = remote.export_logs(tmp_path / "a", **options)
    _same_export(mine, first, tmp_path / "a-local", tmp_path / "a")
    assert [line["in.text"] for line in _lines(first)] == ["bad", "bad", "doomed"]
    # ok 0, bad 1, bad 2, then doomed 3 and doomed again 4: one sequence for both logs
    assert first.resume == {"start_sequence": 3, "start_failure_sequence": 4}
    rest = remote.export_logs(tmp_path / "b", valid=False, **first.resume)
    _same_export(
        local.export_logs(tmp_path / "b-local", valid=False, **first.resume),
        rest,
        tmp_path / "b-local",
        tmp_path / "b",
    )
    lines = _lines(rest)
    assert [line["in.text"] for line in lines] == ["doomed again"] and rest.complete
    assert "TransientServiceError" in lines[0]["error"]
    assert rest.resume == {"start_sequence": 3, "start_failure_sequence": 5}

    # nested lines, and Arrow files of structs, the same as locally
    for arrow in (False, True):
        selection: dict[str, Any] = {"dataset_separator": None, "arrow": arrow, "valid": False}
        there = tmp_path / f"nested-{arrow}"
        here = tmp_path / f"nested-{arrow}-local"
        nested = remote.export_logs(there, **selection)
        _same_export(local.export_logs(here, **selection), nested, here, there)
    nested_lines = _lines(remote.export_logs(tmp_path / "lines", dataset_separator=None))
    assert [line["in"] for line in nested_lines] == [
        {"text": "ok"},
        {"text": "bad"},
        {"text": "bad"},
    ]
    assert nested_lines[1]["anomaly"] == {"count": 1, "bad": True}
    with pytest.raises(errors.ValidationError, match="selects no column"):
        remote.export_logs(tmp_path / "none", dataset=["outputs"])
