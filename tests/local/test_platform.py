"""LocalPlatform: every API group's common operations, uploads, and bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import (
    ACCOUNT,
    model_request,
    ready_dataset,
    service_request,
    write_dataset,
    write_package,
)

from assay import errors
from assay.local import LocalPlatform
from assay.schema.status import Reason, Status


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# -- datasets ------------------------------------------------------------------------------


def test_dataset_create_then_upload_becomes_ready(platform: LocalPlatform, tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "data", rows=30, parts=3)
    dataset = platform.datasets.create_arrow_dataset(directory, account=ACCOUNT, name="prompts")
    assert (dataset.status, dataset.reason) == (Status.Created, Reason.WaitingForUpload)
    assert [a.path for a in dataset.artifacts] == [
        "part-0.parquet",
        "part-1.parquet",
        "part-2.parquet",
    ]
    assert dataset.artifacts[1].digest.md5 == _md5(directory / "part-1.parquet")
    assert dataset.schema_.arrow_schema().names == ["_index_", "text"]

    dataset = platform.datasets.upload_arrow_dataset(dataset, directory)
    assert dataset.status == Status.Ready
    assert dataset.message == "30 instances in 3 files"
    table = platform.datasets.open(dataset.id).to_table()
    assert sorted(table.column("_index_").to_pylist()) == list(range(30))
    assert (platform.entity_path(dataset.id) / "part-2.parquet").read_bytes() == (
        directory / "part-2.parquet"
    ).read_bytes()


def test_dataset_without_index_is_refused_and_nothing_registered(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    directory = write_dataset(tmp_path / "data", index=False)
    with pytest.raises(errors.ValidationError) as info:
        platform.datasets.create_arrow_dataset(directory, account=ACCOUNT, name="x")
    assert "_index_" in str(info.value) and "x" in str(info.value)
    assert platform.datasets.query() == []


def test_corrupt_parquet_is_refused_and_nothing_registered(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    directory = write_dataset(tmp_path / "data", parts=2)
    (directory / "part-1.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(errors.DataIntegrityError) as info:
        platform.datasets.create_arrow_dataset(directory, account=ACCOUNT, name="x")
    assert "part-1.parquet" in str(info.value)
    assert platform.datasets.query() == []


def test_file_changed_after_create_is_refused_and_upload_can_be_repeated(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    directory = write_dataset(tmp_path / "data", parts=2)
    dataset = platform.datasets.create_arrow_dataset(directory, account=ACCOUNT, name="x")
    original = (directory / "part-1.parquet").read_bytes()
    pq.write_table(
        pa.table({"_index_": pa.array([99], pa.int64()), "text": ["changed"]}),
        directory / "part-1.parquet",
    )
    with pytest.raises(errors.DataIntegrityError) as info:
        platform.datasets.upload_arrow_dataset(dataset, directory)
    assert "part-1.parquet" in str(info.value) and dataset.id in str(info.value)
    again = platform.datasets.get(dataset.id)
    assert (again.status, again.reason) == (Status.Created, Reason.WaitingForUpload)
    assert not (platform.entity_path(dataset.id) / "part-0.parquet").exists()

    (directory / "part-1.parquet").write_bytes(original)
    assert platform.datasets.upload_arrow_dataset(dataset, directory).status == Status.Ready


def test_finalize_with_missing_artifact_names_it(platform: LocalPlatform, tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "data", parts=2)
    dataset = platform.datasets.create_arrow_dataset(directory, account=ACCOUNT, name="x")
    platform.datasets.put_artifact(dataset.id, "part-0.parquet", directory / "part-0.parquet")
    with pytest.raises(errors.ValidationError) as info:
        platform.datasets.finalize(dataset.id)
    assert "part-1.parquet" in str(info.value)
    with pytest.raises(errors.ValidationError):
        platform.datasets.put_artifact(dataset.id, "other.parquet", b"x")


def test_ready_dataset_cannot_be_uploaded_again(platform: LocalPlatform, tmp_path: Path) -> None:
    dataset_id = ready_dataset(platform, tmp_path / "data")
    with pytest.raises(errors.ConflictError) as info:
        platform.datasets.put_artifact(dataset_id, "part-0.parquet", b"x")
    assert "Ready" in str(info.value)


def test_artifact_paths_that_escape_are_refused(platform: LocalPlatform) -> None:
    request = {
        "account": ACCOUNT,
        "name": "bad",
        "artifacts": [{"path": "../escape.parquet"}],
        "schema": {"arrowSchema": "x"},
    }
    with pytest.raises(errors.ValidationError) as info:
        platform.datasets.create(request)
    assert "../escape.parquet" in str(info.value)
    assert platform.datasets.query() == []


def test_open_before_ready_is_refused(platform: LocalPlatform, tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "data")
    dataset = platform.datasets.create_arrow_dataset(directory, account=ACCOUNT, name="x")
    with pytest.raises(errors.ConflictError) as info:
        platform.datasets.open(dataset.id)
    assert "WaitingForUpload" in str(info.value)


# -- modules -------------------------------------------------------------------------------


def test_module_package_leaves_out_caches_and_hidden_files(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    package = write_package(tmp_path / "pkg")
    module = platform.modules.create_package(package, account=ACCOUNT, name="pkg")
    assert [a.path for a in module.artifacts] == [
        "README.md",
        "mypkg/__init__.py",
        "mypkg/metrics.py",
        "mypkg/notebook.ipynb",
    ]
    module = platform.modules.upload_package(module, package)
    assert module.status == Status.Ready
    assert (platform.entity_path(module.id) / "mypkg" / "metrics.py").is_file()
    assert not (platform.entity_path(module.id) / ".env").exists()


def test_module_include_and_exclude(platform: LocalPlatform, tmp_path: Path) -> None:
    package = write_package(tmp_path / "pkg")
    only_py = platform.modules.create_package(package, account=ACCOUNT, name="a", include=["*.py"])
    assert [a.path for a in only_py.artifacts] == ["mypkg/__init__.py", "mypkg/metrics.py"]
    no_nb = platform.modules.create_package(
        package, account=ACCOUNT, name="b", exclude=["*.ipynb", "README.md"]
    )
    assert [a.path for a in no_nb.artifacts] == ["mypkg/__init__.py", "mypkg/metrics.py"]
    with pytest.raises(errors.ValidationError) as info:
        platform.modules.create_package(package, account=ACCOUNT, name="c", include=["*.rs"])
    assert "no files" in str(info.value)


def test_link_entity_makes_an_editable_directory(platform: LocalPlatform, tmp_path: Path) -> None:
    package = write_package(tmp_path / "pkg")
    id = platform.link_entity(package)
    assert (platform.entity_path(id) / "mypkg" / "metrics.py").read_text().startswith("def score")
    (package / "mypkg" / "new.py").write_text("x = 1\n")
    assert (platform.entity_path(id) / "mypkg" / "new.py").is_file()


# -- every group ---------------------------------------------------------------------------


def test_get_unknown_id_names_kind_and_id(platform: LocalPlatform) -> None:
    assert platform.evaluations.get("0" * 32) is None  # as the reference platform's get
    with pytest.raises(errors.NotFoundError) as info:
        platform.evaluations.require("0" * 32)
    assert "Evaluation" in str(info.value) and "0" * 32 in str(info.value)


def test_get_with_wrong_kind_is_not_found(platform: LocalPlatform) -> None:
    model = platform.models.create(model_request())
    assert platform.datasets.get(model.id) is None
    with pytest.raises(errors.NotFoundError):
        platform.datasets.require(model.id)


def test_invalid_request_names_field_and_writes_nothing(platform: LocalPlatform) -> None:
    request = model_request()
    request["resources"] = {"storage": "lots"}
    with pytest.raises(errors.ValidationError) as info:
        platform.models.create(request)
    assert "resources.storage" in str(info.value) and "lots" in str(info.value)
    bad_account = model_request(account="not a valid account!")
    with pytest.raises(errors.ValidationError) as info:
        platform.models.create(bad_account)
    assert "account" in str(info.value)
    assert platform.models.query() == []


def test_reference_to_missing_entity_is_not_found_and_writes_nothing(
    platform: LocalPlatform,
) -> None:
    with pytest.raises(errors.NotFoundError) as info:
        platform.inferenceservices.create(service_request(model_id="f" * 32))
    assert "Model" in str(info.value) and "f" * 32 in str(info.value)
    assert platform.inferenceservices.query() == []


def test_service_embeds_its_model(platform: LocalPlatform) -> None:
    model = platform.models.create(model_request(name="m1"))
    service = platform.inferenceservices.create(service_request(model_id=model.id))
    assert service.model is not None and service.model.id == model.id and service.model.name == "m1"
    assert service.dependencies() == [model.id]
    assert [s.id for s in platform.inferenceservices.query(model=model.id)] == [service.id]


def test_labels_merge_remove_and_query(platform: LocalPlatform) -> None:
    a = platform.models.create(model_request("a"))
    b = platform.models.create(model_request("b"))
    platform.models.label(a.id, {"team": "red", "stage": "dev"})
    platform.models.label(b.id, {"team": "blue"})
    labeled = platform.models.label(a.id, {"stage": None, "example.com/owner": "ana"})
    assert labeled.labels == {"team": "red", "example.com/owner": "ana"}
    assert [m.name for m in platform.models.query(labels={"team": "red"})] == ["a"]
    assert [m.name for m in platform.models.query(labels={"team": ["red", "blue"]})] == ["a", "b"]
    assert [m.name for m in platform.models.query(labels='{"example.com/owner": "ana"}')] == ["a"]
    with pytest.raises(errors.ValidationError) as info:
        platform.models.label(a.id, {"assay.io/system": "x"})
    assert "assay.io/system" in str(info.value)
    with pytest.raises(errors.ValidationError):
        platform.models.label(a.id, {"team": "has spaces"})


def test_documentation_edit_merges_and_removes(platform: LocalPlatform) -> None:
    model = platform.models.create(model_request())
    assert platform.models.documentation(model.id).title is None
    platform.models.edit_documentation(model.id, title="A model", summary="Short.")
    doc = platform.models.edit_documentation(model.id, {"fullPage": "# Long", "summary": None})
    assert (doc.entity, doc.title, doc.summary, doc.fullPage) == (
        model.id,
        "A model",
        None,
        "# Long",
    )


def test_query_filters_order_and_paging(platform: LocalPlatform) -> None:
    made = [platform.models.create(model_request(f"m{i:02d}")).id for i in range(25)]
    assert [m.id for m in platform.models.query()] == made
    assert [m.id for m in platform.models.query(order="descending")] == made[::-1]
    pages: list[str] = []
    after = None
    while True:
        page = platform.models.query(limit=10, after=after)
        pages.extend(m.id for m in page)
        if len(page) < 10:
            break
        after = page[-1].id
    assert pages == made
    assert [m.name for m in platform.models.query(name=["m03", "m07"])] == ["m03", "m07"]
    assert platform.models.query(status="Ready", account="someone-else") == []
    with pytest.raises(errors.ValidationError) as info:
        platform.models.query(colour="red")
    assert "colour" in str(info.value) and "labels" in str(info.value)
    with pytest.raises(errors.ValidationError):
        platform.models.query(limit=0)


def test_delete_then_purge(platform: LocalPlatform, tmp_path: Path) -> None:
    dataset_id = ready_dataset(platform, tmp_path / "data")
    platform.datasets.delete(dataset_id)
    dataset = platform.datasets.get(dataset_id)
    assert (dataset.status, dataset.reason) == (Status.Deleted, Reason.DeleteCommand)
    platform.datasets.purge(dataset_id)
    assert not platform.entity_path(dataset_id).exists()
    assert platform.datasets.get(dataset_id) is None
    with pytest.raises(errors.NotFoundError):
        platform.datasets.require(dataset_id)


def test_purge_refused_while_dependents_live(platform: LocalPlatform) -> None:
    model = platform.models.create(model_request())
    service = platform.inferenceservices.create(service_request(model_id=model.id))
    with pytest.raises(errors.ConflictError) as info:
        platform.models.purge(model.id)
    assert service.id in str(info.value) and "force=True" in str(info.value)
    platform.inferenceservices.delete(service.id)
    platform.models.purge(model.id)


def test_state_persists_across_reopening(tmp_path: Path) -> None:
    root = tmp_path / "state"
    with LocalPlatform(storage_root=root, account=ACCOUNT) as first:
        dataset_id = ready_dataset(first, tmp_path / "data")
        model = first.models.create(model_request())
        first.models.label(model.id, {"k": "v"})
    with LocalPlatform(storage_root=root) as second:
        assert second.datasets.get(dataset_id).status == Status.Ready
        assert second.models.get(model.id).labels == {"k": "v"}
        assert second.datasets.open(dataset_id).count_rows() == 20


def test_two_platforms_on_one_root_see_each_other(tmp_path: Path) -> None:
    root = tmp_path / "state"
    with LocalPlatform(storage_root=root) as a, LocalPlatform(storage_root=root) as b:
        model = a.models.create(model_request())
        assert b.models.get(model.id).name == "model"
        b.models.label(model.id, {"seen-by": "b"})
        assert a.models.get(model.id).labels == {"seen-by": "b"}


def test_scores_query_across_systems(platform: LocalPlatform) -> None:
    from assay.schema.platform import Score

    def score(analysis: str, service: str, q: float) -> Score:
        from assay.schema import ids

        return Score.model_validate(
            {
                "kind": "Score",
                "id": ids.score_id(analysis, "accuracy"),
                "name": "accuracy",
                "title": "Accuracy",
                "summary": "Share of correct answers",
                "analysis": analysis,
                "quantity": q,
                "quantityString": f"{q:.1f}",
                "text": "ok",
                "metadata": {"refs": {"method": "1" * 32, "inferenceService": service}},
            }
        )

    a, b = "a" * 32, "b" * 32
    platform.scores._put(ACCOUNT, [score(a, "c" * 32, 0.9)])
    platform.scores._put(ACCOUNT, [score(b, "d" * 32, 0.7)])
    assert [s.quantity for s in platform.scores.get(analysis=a)] == [0.9]
    assert sorted(
        s.quantity or 0 for s in platform.scores.query(method="1" * 32, name="accuracy")
    ) == [0.7, 0.9]
    assert [s.analysis for s in platform.scores.query(inferenceService="d" * 32)] == [b]


def test_invalid_account_for_platform(tmp_path: Path) -> None:
    with pytest.raises(errors.ValidationError):
        LocalPlatform(storage_root=tmp_path, account="bad account")


def test_unknown_attribute_lists_groups(platform: LocalPlatform) -> None:
    with pytest.raises(AttributeError) as info:
        platform.dataset  # noqa: B018
    assert "datasets" in str(info.value)


def test_evaluation_open_reads_only_its_complete_output(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    import io

    from tests.conftest import evaluation_request

    from assay.engine import WorkflowContext, WorkflowSpec

    def parquet(rows: list[int]) -> bytes:
        sink = io.BytesIO()
        pq.write_table(pa.table({"_index_": pa.array(rows, pa.int64())}), sink)
        return sink.getvalue()

    def handler(ctx: WorkflowContext) -> None:
        ctx.storage.put_bytes(ctx.entity.id, "data/part-0.parquet", parquet([0, 1]))
        ctx.storage.put_bytes(ctx.entity.id, "data/part-1.parquet", parquet([2]))
        ctx.storage.put_bytes(ctx.entity.id, ".assay/progress.parquet", parquet([7, 8, 9]))
        with pytest.raises(errors.ConflictError) as info:
            platform.evaluations.open(ctx.entity.id)
        assert "Admitted" in str(info.value)

    platform.core.register_workflow(WorkflowSpec("Evaluation", handler))
    dataset = ready_dataset(platform, tmp_path / "data")
    service = platform.inferenceservices.create(service_request())
    evaluation = platform.evaluations.create(evaluation_request(dataset, service.id))
    assert evaluation.status == Status.Complete
    table = platform.evaluations.open(evaluation.id).to_table()
    assert sorted(table.column("_index_").to_pylist()) == [0, 1, 2]
