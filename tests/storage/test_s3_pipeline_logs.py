"""Pipeline inference logs on S3 storage, against a real S3-compatible server on loopback
(moto): each segment, once whole, is copied to the bucket; a platform on another machine (its
own data folder, the same store and bucket) reads every record; its own records continue the
sequence; a bucket that refuses writes leaves the segments in the folder, counted, until it
answers again; the bucket's copy is not reachable as an entity."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import ACCOUNT, service_request
from tests.pipelines.test_log import records
from tests.s3_server import S3Env, s3_endpoint, s3_env

from assay import errors
from assay.local import LocalPlatform, mocks
from assay.pipelines._log_archive import ORIGIN_FILE, Archive, _origin, archive_id
from assay.pipelines.log import InferenceLog
from assay.pipelines.runner import log_directory
from assay.schema.status import Status
from assay.storage import S3Storage

__all__ = ["s3_endpoint", "s3_env"]  # the fixtures, brought into scope

NAME = "assistant"


def machine(tmp_path: Path, env: S3Env, name: str) -> LocalPlatform:
    """A platform on "machine" ``name``: its own data folder; the store and bucket shared."""
    return LocalPlatform(
        storage_root=tmp_path / name,
        account=ACCOUNT,
        database_url=f"sqlite:///{tmp_path / 'store.db'}",
        storage=env.url("audits"),
    )


def exported(pipeline: Any, directory: Path, **kwargs: Any) -> tuple[list[dict[str, Any]], Any]:
    result = pipeline.export_logs(directory, dataset=["seq", "in"], **kwargs)
    lines = [
        json.loads(line)
        for path in sorted(directory.iterdir())
        for line in path.read_text().splitlines()
    ]
    return lines, result


@pytest.fixture
def first(s3_env: S3Env, tmp_path: Path) -> Iterator[LocalPlatform]:
    with machine(tmp_path, s3_env, "first") as platform:
        yield platform


def test_segments_are_copied_to_the_bucket_and_another_machine_reads_and_continues_the_log(
    first: LocalPlatform, s3_env: S3Env, tmp_path: Path
) -> None:
    service = first.inferenceservices.create_mock(
        mocks.TextCompletion, name="writer", kwargs={"seed": 1}
    )
    pipeline = first.pipelines.create(NAME)
    pipeline.add_model_step(service).add_validations(short="in.text == 'q0'")
    pipeline.deploy()
    pipeline.infer([{"text": f"q{i}"} for i in range(30)])
    assert len(pipeline.logs()) == 30  # a read makes segments (and copies them)
    counters = pipeline.log_counters()
    assert counters["written"] == 30 and counters["unshipped"] == 0

    folder = log_directory(first.core, ACCOUNT, NAME)
    origin = (folder / ORIGIN_FILE).read_text().strip()
    base = f"audits/{archive_id(ACCOUNT, NAME)}/log/{origin}/"
    keys = s3_env.keys(base)
    local = sorted(p.name for p in (folder / "log").glob("segment-*.parquet"))
    assert keys == [base + name for name in local] and keys
    client: Any = s3_env.client()
    for name in local:  # the very bytes of the folder's segments
        body = client.get_object(Bucket=s3_env.bucket, Key=base + name)["Body"].read()
        assert body == (folder / "log" / name).read_bytes()
    first.close()
    shutil.rmtree(tmp_path / "first")  # the first machine is gone, with its disk

    with machine(tmp_path, s3_env, "second") as second:
        again = second.pipelines.get(NAME)
        logs = again.logs(arrow=True)
        assert sorted(logs.column("in.text").to_pylist()) == sorted(f"q{i}" for i in range(30))
        assert again.logs(valid=False, arrow=True).column("in.text").to_pylist() == ["q0"]
        counters = again.log_counters()
        assert counters["written"] == 30 and counters["last_seq"] == 29

        # its own records continue the sequence: no number is given twice
        again.deploy()  # the first machine's session ended with it
        again.infer([{"text": f"r{i}"} for i in range(5)])
        lines, result = exported(again, tmp_path / "all")
        assert result.records == 35
        assert [line["seq"] for line in lines] == list(range(35))
        assert [line["in.text"] for line in lines[30:]] == [f"r{i}" for i in range(5)]
        counters = again.log_counters()
        assert counters["written"] == 35 and counters["last_seq"] == 34
        # an export resumed where another stopped repeats nothing and skips nothing
        lines, result = exported(again, tmp_path / "part", limit=20)
        rest, _ = exported(again, tmp_path / "rest", **result.resume)
        assert [line["seq"] for line in lines + rest] == list(range(35))

        # logged traffic from both machines becomes a Dataset
        dataset, evaluation = second.datasets.create_from_pipeline_logs(again, name="traffic")
        assert evaluation.status == Status.Complete
        assert second.datasets.open(dataset.id).count_rows() == 35


def test_a_bucket_that_refuses_writes_leaves_the_segments_in_the_folder_until_it_answers(
    s3_env: S3Env, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = S3Storage(s3_env.url("logs"), cache_dir=tmp_path / "cache")
    id = archive_id(ACCOUNT, NAME)
    log = InferenceLog(
        tmp_path / "here", archive=Archive(storage, id, tmp_path / "here"), flush_rows=10
    )
    client: Any = s3_env.client()
    client.delete_bucket(Bucket=s3_env.bucket)  # empty still: the outage begins
    try:
        log.append(records(0, 1))
        log.flush()  # the segment is written; its copy fails, and is counted
        assert log.counters()["unshipped"] == 1
        assert any("copying its segments to" in r.getMessage() for r in caplog.records)
        assert log.read(limit=None)[0].num_rows == 1  # this machine reads it meanwhile

        client.create_bucket(Bucket=s3_env.bucket)  # the bucket is back
        deadline = time.monotonic() + 30
        while log.counters()["unshipped"] and time.monotonic() < deadline:
            time.sleep(0.2)  # the writer tries again by itself (after 1 s, then longer)
            log.flush()
        assert log.counters()["unshipped"] == 0
        assert len(s3_env.keys(f"logs/{id}/log/")) == 1
    finally:
        log.close()

    # another folder (machine) reads what this one shipped
    elsewhere = InferenceLog(tmp_path / "there", archive=Archive(storage, id, tmp_path / "there"))
    try:
        assert elsewhere.read(limit=None)[0].column("in.text").to_pylist() == ["prompt 0"]
    finally:
        elsewhere.close()


def test_a_folder_keeps_one_origin_and_a_damaged_one_is_replaced(tmp_path: Path) -> None:
    made = {_origin(tmp_path) for _ in range(5)}
    assert len(made) == 1 and (tmp_path / ORIGIN_FILE).read_text().strip() in made
    (tmp_path / ORIGIN_FILE).write_text("../../other-origin\n")
    replaced = _origin(tmp_path)
    assert replaced not in made and len(replaced) == 16
    assert not list(tmp_path.glob(".origin-*"))  # no temporary left behind


def test_the_logs_bucket_copy_is_no_entity_of_any_account(
    first: LocalPlatform, tmp_path: Path
) -> None:
    service = first.inferenceservices.create_mock(mocks.TextCompletion, name="w")
    pipeline = first.pipelines.create(NAME)
    pipeline.add_model_step(service).deploy()
    pipeline.infer({"text": "secret"})
    pipeline.logs()
    id = archive_id(ACCOUNT, NAME)
    assert first.core.storage.list(id, "log/")  # it is in the bucket ...
    with pytest.raises(errors.NotFoundError):  # ... under an id no entity has
        first.core.store.require(id)
    assert archive_id(ACCOUNT, NAME) != archive_id("other", NAME)
    # nobody can make an entity with that id, to reach the log through artifact routes
    with pytest.raises(errors.ValidationError, match="id: unknown field"):
        first.inferenceservices.create({**service_request(), "id": id})
